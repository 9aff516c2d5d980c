"""A trained language model, rebuilt from its run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from textrnn.errors import RunDirError
from textrnn.language_model.config import LanguageModelConfig
from textrnn.language_model.model import build_model
from textrnn.tokenizers import Tokenizer
from textrnn.training import run_dir as run_dir_lib


@dataclass(frozen=True)
class LanguageModelRun:
    """What a language-model run directory holds, loaded.

    Args:
        config: the resolved config saved by training.
        tokenizer: the run's tokenizer (`vocab.txt`, `tokenizer.json`).
        model: the stateless model (`build_model`) with the run's weights.
    """

    config: LanguageModelConfig
    tokenizer: Tokenizer
    model: keras.Model


def load_run(run_dir: str | os.PathLike) -> LanguageModelRun:
    """Rebuild a trained language model (stateless) from its run directory.

    A run trained with `data.carry_state` (a stateful, fixed-batch model)
    loads into the stateless model: the weights are the same.
    """
    config = run_dir_lib.load_run_config(run_dir, LanguageModelConfig)
    if config.task != "language_model":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a language model")
    tokenizer = Tokenizer.load(run_dir)
    model = build_model(config, tokenizer, compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return LanguageModelRun(config, tokenizer, model)
