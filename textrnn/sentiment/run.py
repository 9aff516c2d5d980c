"""A trained classifier, rebuilt from its run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from textrnn.errors import RunDirError
from textrnn.sentiment.config import SentimentConfig
from textrnn.sentiment.data import Labels
from textrnn.sentiment.model import build_model
from textrnn.tokenizers import Tokenizer
from textrnn.training import run_dir as run_dir_lib


@dataclass(frozen=True)
class SentimentRun:
    """What a sentiment run directory holds, loaded.

    Args:
        config: the resolved config saved by training.
        tokenizer: the run's tokenizer (`vocab.txt`, `tokenizer.json`).
        labels: the run's classes (`labels.json`).
        model: the classifier (uncompiled) with the run's weights.
    """

    config: SentimentConfig
    tokenizer: Tokenizer
    labels: Labels
    model: keras.Model


def load_run(run_dir: str | os.PathLike) -> SentimentRun:
    """Rebuild a trained classifier from its run directory."""
    config = run_dir_lib.load_run_config(run_dir, SentimentConfig)
    if config.task != "sentiment":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a sentiment one")
    tokenizer = Tokenizer.load(run_dir)
    labels = Labels.load(run_dir)
    model = build_model(config, tokenizer, num_classes=len(labels.values), compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return SentimentRun(config, tokenizer, labels, model)
