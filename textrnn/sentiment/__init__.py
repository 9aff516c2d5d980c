"""Sentiment analysis, or any text classification: many-to-one.

Model: embedding -> RNNStack -> pooling (final state, or masked max / mean
over time) -> dropout -> dense logits (float32). Labels may be integers or
strings; the label set is learned from the training data and saved in the
run directory as `labels.json`.

Modules:
    config      the recipe: `SentimentConfig` ([data], [tokenizer], [model], [training])
    data        reading labelled rows, labels and tokenizer in the run directory,
                encoding, `tf.data` pipelines: `load_datasets(config, run_dir)`
    model       `build_model(config, tokenizer, num_classes, ...)`
    transfer    `--init-from LM_RUN`: the language model's vocabulary and weights
    run         `SentimentRun` and `load_run(run_dir)`
    inference   `predict(serve_fn, texts, PredictOptions)`, `evaluate(run_dir, data, ...)`
    serving     `serving_signatures(run)`: serving_default, classify, manifest, warm-up
"""

from __future__ import annotations

from textrnn.sentiment.config import SentimentConfig
from textrnn.sentiment.data import LABELS_FILE, Labels, load_datasets
from textrnn.sentiment.inference import (
    PredictOptions,
    classification_metrics,
    evaluate,
    predict,
)
from textrnn.sentiment.litert import litert_functions
from textrnn.sentiment.model import build_model
from textrnn.sentiment.run import SentimentRun, load_run
from textrnn.sentiment.serving import serving_signatures
from textrnn.tasks import Task
from textrnn.tokenizers import SETTINGS_FILE, VOCABULARY_FILE

Config = SentimentConfig

TASK = Task(
    name="sentiment",
    config_class=SentimentConfig,
    run_files=(LABELS_FILE, VOCABULARY_FILE, SETTINGS_FILE),
    load_datasets=load_datasets,
    build_model=build_model,
    load_run=load_run,
    serving_signatures=serving_signatures,
    litert_functions=litert_functions,
)

__all__ = [
    "TASK",
    "Config",
    "Labels",
    "PredictOptions",
    "SentimentConfig",
    "SentimentRun",
    "build_model",
    "classification_metrics",
    "evaluate",
    "load_datasets",
    "load_run",
    "predict",
    "serving_signatures",
]
