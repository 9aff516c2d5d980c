"""A trained translation run, rebuilt from its run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from textrnn.errors import RunDirError
from textrnn.tokenizers import Tokenizer
from textrnn.training import run_dir as run_dir_lib
from textrnn.translation.config import TranslationConfig
from textrnn.translation.data import load_tokenizers
from textrnn.translation.model import build_model


@dataclass(frozen=True)
class TranslationRun:
    """What evaluation, translation and export need from a run directory."""

    config: TranslationConfig
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    model: keras.Model  # the teacher-forcing model, uncompiled, with the run's weights


def load_run(run_dir: str | os.PathLike) -> TranslationRun:
    """Rebuild a trained translation model from its run directory.

    Inference runs Keras's recurrent loop whatever the implementation: the
    fast CPU loop only runs in training (see `textrnn.layers.fast_rnn`).
    """
    config = run_dir_lib.load_run_config(run_dir, TranslationConfig)
    if config.task != "translation":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a translation one")
    source_tokenizer, target_tokenizer = load_tokenizers(run_dir)
    model = build_model(config, (source_tokenizer, target_tokenizer), compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return TranslationRun(config, source_tokenizer, target_tokenizer, model)
