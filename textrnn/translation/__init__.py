"""Translation: an encoder-decoder with attention (Bahdanau et al. 2015, Luong et al. 2015).

Model:

    source ids -> embedding -> RNNStack encoder (bidirectional by default) -> memory
                                   final states -> Bridge (dense or zeros) -> decoder states
    target ids -> embedding -> AttentionDecoder:
        h_t = RNNStack decoder step([embedding_t; a_{t-1}])    (a_{t-1} only with input feeding)
        c_t, weights_t = attention(h_t, memory, source mask)  (additive | dot | general)
        a_t = tanh(W [c_t; h_t])                              the attentional vector
        logits_t = V a_t (float32; V tied to the target embeddings as an option)

Training is teacher forcing with a label-smoothed, padding-masked cross
entropy. Without input feeding the decoder's RNNStack runs over the whole
target at once and attention is computed for all steps in parallel; with it,
the decoder steps through time in a `tf.while_loop`. Decoding (greedy and
beam search, `textrnn.decoding.search`) uses the same `AttentionDecoder.step`.

Run directory: `source/` and `target/` hold each language's `tokenizer.json`
and `vocab.txt` (identical copies when `tokenizer.joint`).

Modules:

    config.py      the recipe: [data], [tokenizer], [model], [decoding], [training]
    data.py        sentence pairs, the two vocabularies, encoding, `load_datasets`
    decoder.py     the decoder's layers: `Bridge`, `AttentionDecoder`
    model.py       `build_model` and its loss, `MaskedSequenceLoss`
    run.py         `TranslationRun` and `load_run(run_dir)`
    translator.py  `Translator`: the in-graph tokenize -> search -> detokenize
    serving.py     `serving_signatures(run)`: what exports and serves
    inference.py   `translate_texts` with `TranslationOptions`, `evaluate` (BLEU, chrF, loss)
    plot.py        attention heatmaps
"""

from __future__ import annotations

from textrnn.tasks import Task
from textrnn.translation.config import TranslationConfig
from textrnn.translation.data import (
    RUN_FILES,
    SOURCE_DIR,
    TARGET_DIR,
    EncodedPairs,
    Pairs,
    build_tokenizers,
    encode_pairs,
    load_datasets,
    load_tokenizers,
    read_pairs,
    read_training_pairs,
)
from textrnn.translation.decoder import AttentionDecoder, Bridge
from textrnn.translation.inference import (
    Translation,
    TranslationOptions,
    corpus_scores,
    evaluate,
    open_model,
    translate_texts,
    validate_decoding,
    validation_loss,
)
from textrnn.translation.litert import litert_functions
from textrnn.translation.model import MaskedSequenceLoss, build_model
from textrnn.translation.plot import plot_attention
from textrnn.translation.run import TranslationRun, load_run
from textrnn.translation.serving import serving_signatures
from textrnn.translation.translator import Translator, detokenize_punctuation

Config = TranslationConfig

TASK = Task(
    name="translation",
    config_class=TranslationConfig,
    run_files=RUN_FILES,
    load_datasets=load_datasets,
    build_model=build_model,
    load_run=load_run,
    serving_signatures=serving_signatures,
    litert_functions=litert_functions,
)

__all__ = [
    "SOURCE_DIR",
    "TARGET_DIR",
    "TASK",
    "AttentionDecoder",
    "Bridge",
    "Config",
    "EncodedPairs",
    "MaskedSequenceLoss",
    "Pairs",
    "Translation",
    "TranslationConfig",
    "TranslationOptions",
    "TranslationRun",
    "Translator",
    "build_model",
    "build_tokenizers",
    "corpus_scores",
    "detokenize_punctuation",
    "encode_pairs",
    "evaluate",
    "load_datasets",
    "load_run",
    "load_tokenizers",
    "open_model",
    "plot_attention",
    "read_pairs",
    "read_training_pairs",
    "serving_signatures",
    "translate_texts",
    "validate_decoding",
    "validation_loss",
]
