"""Plain helpers of the language-model tests: the tiny corpus and recipe, a generate call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from textrnn import language_model
from textrnn.config import load_config
from textrnn.language_model.config import LanguageModelConfig
from textrnn.training.fit import train

TEXT = "".join(f"the cat sat on mat {i % 7}.\nto be or not to be.\n" for i in range(60))


def lm_overrides(train_path: Path, **extra: Any) -> dict[str, Any]:
    """Dotted overrides for a tiny, seeded 2-layer model (8 units) without XLA."""
    values = {
        "data.train": str(train_path),
        "data.seq_len": 16,
        "model.embedding_dim": 8,
        "model.stack.units": 8,
        "model.stack.num_layers": 2,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.seed": 3,
        "training.jit_compile": "false",
    }
    values.update(extra)
    return values


def train_lm(run_dir: Path, train_path: Path, **extra: Any) -> LanguageModelConfig:
    """Train the tiny model quietly into `run_dir` (restarting it); return its config."""
    config = load_config(LanguageModelConfig, None, lm_overrides(train_path, **extra))
    train(language_model.TASK, config, run_dir, restart=True, echo=lambda line: None, verbose=0)
    return config


def generate(
    signature, prompts, max_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=7
) -> list[str]:
    """Call a `generate` signature with Python values; the texts, decoded."""
    outputs = signature(
        prompt=tf.constant(prompts),
        max_tokens=tf.constant(max_tokens, tf.int32),
        temperature=tf.constant(temperature, tf.float32),
        top_k=tf.constant(top_k, tf.int32),
        top_p=tf.constant(top_p, tf.float32),
        seed=tf.constant(seed, tf.int64),
    )
    return [t.decode("utf-8") for t in outputs["text"].numpy()]
