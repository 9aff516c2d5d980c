"""`--init-from LM_RUN`: start a classifier from a language model's vocabulary and weights.

A fresh run copies the language model's tokenizer files (so the ids mean the
same tokens); the built classifier then gets the language model's embedding
and RNNStack weights, read from that run's weights file by
`textrnn.training.transfer` (tasks never import each other). The two models
must agree on the vocabulary, embedding width, cell, number of layers and
units; a bidirectional classifier (one layer) gets them in its forward direction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from textrnn import config as config_lib
from textrnn.config import StackConfig
from textrnn.errors import ConfigError, RunDirError
from textrnn.tokenizers import Tokenizer
from textrnn.training import run_dir as run_dir_lib
from textrnn.training.transfer import copy_tokenizer, load_embedding_and_stack

LANGUAGE_MODEL_TASK = "language_model"  # the `task` of the runs --init-from takes

__all__ = ["copy_tokenizer", "initialize_from_language_model"]


def initialize_from_language_model(
    model: keras.Model, tokenizer: Tokenizer, lm_run_dir: str | os.PathLike
) -> None:
    """Copy the embedding and RNNStack weights of a language-model run into `model`.

    The classifier must use the language model's vocabulary and the same
    embedding width, cell, number of layers and units. A bidirectional
    one-layer classifier gets the weights in its forward direction.
    """
    embedding_dim, lm_stack = _language_model_settings(lm_run_dir)
    if Tokenizer.load(lm_run_dir).vocabulary != tokenizer.vocabulary:
        raise ConfigError(
            f"--init-from {lm_run_dir}: the vocabulary differs from this run's; "
            "use a fresh --run-dir so the language model's vocabulary is copied"
        )
    stack = model.get_layer("rnn_stack")
    mismatches = [
        f"{name} {ours} vs {theirs}"
        for name, ours, theirs in [
            ("model.embedding_dim", model.get_layer("embedding").output_dim, embedding_dim),
            ("model.stack.cell", stack.cell, lm_stack.cell),
            ("model.stack.num_layers", stack.num_layers, lm_stack.num_layers),
            ("model.stack.units", stack.units, lm_stack.units),
        ]
        if ours != theirs
    ]
    if stack.bidirectional and stack.num_layers > 1:
        mismatches.append("model.stack.bidirectional with more than one layer")
    if mismatches:
        raise ConfigError(
            f"--init-from {lm_run_dir}: the classifier must match the language model: "
            + "; ".join(mismatches)
        )
    load_embedding_and_stack(model, lm_run_dir)


def _language_model_settings(lm_run_dir: str | os.PathLike) -> tuple[Any, StackConfig]:
    """(model.embedding_dim, model.stack) of the language-model run's `config.json`.

    Read without the language model's config class (tasks never import each
    other): the shared `[model.stack]` section is validated, the rest is not.
    """
    path = Path(lm_run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {lm_run_dir} (--run-dir)")
    config_path = path / run_dir_lib.CONFIG_FILE
    values = run_dir_lib.read_json(config_path, "config")
    task = values.get("task") if isinstance(values, dict) else None
    if task != LANGUAGE_MODEL_TASK:
        raise RunDirError(f"{lm_run_dir} holds a {task!r} run, not a language model")
    model = values.get("model", {})
    try:
        if not isinstance(model, dict):
            raise ConfigError(f"[model] must be a table, got {model!r}")
        stack = config_lib.from_dict(StackConfig, model.get("stack", {}), "model.stack")
    except ConfigError as error:
        raise RunDirError(f"{config_path}: {error}") from None
    return model.get("embedding_dim"), stack
