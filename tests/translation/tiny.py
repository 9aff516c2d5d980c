"""Tiny seeded translation data, recipes and models for the translation tests (plain helpers).

Import them as `from .tiny import ...` (from other test folders: `from translation.tiny
import ...`); the fixtures that share them live in conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUBJECTS = [
    ("the dog", "der Hund"),
    ("a cat", "eine Katze"),
    ("the man", "der Mann"),
    ("a woman", "eine Frau"),
    ("the child", "das Kind"),
]
VERBS = [("runs", "läuft"), ("sleeps", "schläft"), ("eats", "isst"), ("sings", "singt")]
PAIRS = [(f"{s} {v}", f"{ts} {tv}") for (s, ts) in SUBJECTS for (v, tv) in VERBS]  # 20 pairs


def write_pairs(
    directory: Path, pairs: list[tuple[str, str]], name: str = "train"
) -> tuple[Path, Path]:
    """`name.en` / `name.de`, one side of each pair a line."""
    source, target = directory / f"{name}.en", directory / f"{name}.de"
    source.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    target.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return source, target


def tiny_translation_config(directory: Path, **extra: Any):
    """A tiny word-level config over `PAIRS` written to `directory` (training = validation)."""
    from textrnn import translation
    from textrnn.config import load_config

    source, target = write_pairs(directory, PAIRS)
    overrides = {
        "data.source": str(source),
        "data.target": str(target),
        "data.valid_source": str(source),
        "data.valid_target": str(target),
        "data.source_max_length": 8,
        "data.target_max_length": 8,
        "tokenizer.kind": "word",
        "tokenizer.joint": True,
        "tokenizer.vocabulary_size": 64,
        "model.embedding_dim": 16,
        "model.embedding_dropout": 0.0,
        "model.dropout": 0.0,
        "model.label_smoothing": 0.0,
        "model.encoder.units": 16,
        "model.decoder.units": 32,
        "decoding.beam_size": 3,
        "decoding.max_length_offset": 3,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.learning_rate": 0.01,
        "training.seed": 3,
        "training.shuffle_buffer": 20,
    }
    overrides.update(extra)
    return load_config(translation.Config, None, overrides)


def untrained(directory: Path, **extra: Any):
    """A tiny, seeded, untrained model with its tokenizers (no training):
    `(config, (source_tokenizer, target_tokenizer), model)`."""
    from textrnn import translation
    from textrnn.training.strategy import set_seed

    config = tiny_translation_config(directory, **extra)
    set_seed(5)
    pairs = translation.read_pairs(config.data.source, config.data.target)
    tokenizers = translation.build_tokenizers(config, directory, pairs)
    model = translation.build_model(config, tokenizers, compile=False)
    return config, tokenizers, model
