"""Language modeling and text generation: many-to-many, then one-to-many.

The model reads a token sequence and predicts each next token (perplexity,
bits per character); generation feeds its own samples back one step at a
time, in the graph, so an export generates on its own.

    config.py      `LanguageModelConfig`: [data] (layout, windows), [tokenizer], [model], [training]
    data.py        read the corpus, learn the tokenizer, `Corpus`, contiguous (stream) and
                   lines batching, `load_datasets(config, run_dir) -> TaskData`
    model.py       `build_model`: embedding -> RNNStack -> logits (tied or dense);
                   `ResetStates` for training that carries states across batches
    generation.py  `LanguageModel`: the in-graph scorer and sampling loop (`tf.while_loop`)
    run.py         `LanguageModelRun(config, tokenizer, model)`, `load_run(run_dir)`
    serving.py     `serving_signatures(run) -> ServingParts`: generate, score, step, tokenize,
                   detokenize, generate_chunk, prime, generate_rows; manifest and warm-up
                   requests
    inference.py   `evaluate` (perplexity over a file), `GenerationOptions`, `generate_texts`,
                   `stream_tokens`

The task reaches training, export and the CLI through `TASK` (`textrnn.tasks`).
"""

from __future__ import annotations

from textrnn.language_model.config import LanguageModelConfig
from textrnn.language_model.data import (
    Corpus,
    contiguous_batches,
    contiguous_layout,
    encode_corpus,
    load_datasets,
    read_corpus_text,
)
from textrnn.language_model.generation import LanguageModel
from textrnn.language_model.inference import (
    GenerationOptions,
    check_options,
    count_prompt_unknown,
    evaluate,
    evaluate_corpus,
    generate_texts,
    stream_tokens,
)
from textrnn.language_model.litert import litert_functions
from textrnn.language_model.model import ResetStates, build_model
from textrnn.language_model.run import LanguageModelRun, load_run
from textrnn.language_model.serving import serving_signatures, signature_functions
from textrnn.tasks import Task
from textrnn.tokenizers import SETTINGS_FILE, VOCABULARY_FILE

Config = LanguageModelConfig

TASK = Task(
    name="language_model",
    config_class=LanguageModelConfig,
    run_files=(VOCABULARY_FILE, SETTINGS_FILE),
    load_datasets=load_datasets,
    build_model=build_model,
    load_run=load_run,
    serving_signatures=serving_signatures,
    litert_functions=litert_functions,
)

__all__ = [
    "TASK",
    "Config",
    "Corpus",
    "GenerationOptions",
    "LanguageModel",
    "LanguageModelConfig",
    "LanguageModelRun",
    "ResetStates",
    "build_model",
    "check_options",
    "contiguous_batches",
    "contiguous_layout",
    "count_prompt_unknown",
    "encode_corpus",
    "evaluate",
    "evaluate_corpus",
    "generate_texts",
    "load_datasets",
    "load_run",
    "read_corpus_text",
    "serving_signatures",
    "signature_functions",
    "stream_tokens",
]
