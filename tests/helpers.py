"""Plain helpers shared by the tests: tiny seeded data, tiny recipes, subprocess settings.

Import them as `from helpers import ...` (pytest puts tests/ on sys.path through
the top-level conftest.py). Fixtures live in conftest.py; everything here is a
plain function or constant.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 180  # seconds; every subprocess a test starts gets one
PYTHON = sys.executable

POSITIVE = [
    "a good film",
    "great fun",
    "lovely and fine",
    "very good movie",
    "a great story",
    "fine acting",
]
NEGATIVE = [
    "a bad film",
    "awful mess",
    "boring and dull",
    "very bad movie",
    "a terrible story",
    "dull acting",
]


def sentiment_rows(
    count: int = 40, seed: int = 0, labels: tuple[str, str] = ("1", "0")
) -> list[tuple[str, str]]:
    """`count` (text, label) rows alternating positive / negative phrases."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        if index % 2 == 0:
            rows.append((rng.choice(POSITIVE), labels[0]))
        else:
            rows.append((rng.choice(NEGATIVE), labels[1]))
    return rows


def write_tsv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")
) -> Path:
    path.write_text("".join(f"{a}\t{b}\n" for a, b in [header, *rows]), encoding="utf-8")
    return path


def tiny_overrides(
    train: Path | str, valid: Path | str | None = None, **extra: Any
) -> dict[str, Any]:
    """Dotted config overrides for a tiny, fast, seeded sentiment model."""
    overrides: dict[str, Any] = {
        "data.train": str(train),
        "data.valid": str(valid) if valid else "",
        "data.max_length": 16,
        "tokenizer.vocabulary_size": 50,
        "model.embedding_dim": 8,
        "model.stack.units": 4,
        "model.dropout": 0.0,
        "training.epochs": 1,
        "training.batch_size": 2,
        "training.seed": 7,
    }
    overrides.update(extra)
    return overrides


def write_tiny_recipe(path: Path, **extra: Any) -> Path:
    """Write `tiny_overrides` (model and training, no data files) as a TOML recipe at `path`.

    `extra` takes dotted keys, e.g. `**{"training.jit_compile": "false"}`.
    """
    import json

    tables: dict[str, list[str]] = {}
    for key, value in tiny_overrides("", **extra).items():
        if key in ("data.train", "data.valid"):
            continue
        table, _, name = key.rpartition(".")
        tables.setdefault(table, []).append(f"{name} = {json.dumps(value)}")
    path.write_text(
        "".join(f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in tables.items()),
        encoding="utf-8",
    )
    return path


def tiny_train_command(
    directory: Path,
    train_rows: int,
    valid_rows: int,
    epochs: int,
    batch_size: int,
    **recipe: Any,
) -> list[str]:
    """Write tiny.toml, train.tsv and valid.tsv into `directory`; return the
    `sentiment train` arguments (relative to `directory`, with --static-shapes) that use them."""
    write_tiny_recipe(directory / "tiny.toml", **recipe)
    write_tsv(directory / "train.tsv", sentiment_rows(train_rows, seed=1))
    write_tsv(directory / "valid.tsv", sentiment_rows(valid_rows, seed=2))
    return [
        *("sentiment", "train", "--config", "tiny.toml"),
        *("--train", "train.tsv", "--valid", "valid.tsv"),
        *("--epochs", str(epochs), "--batch-size", str(batch_size), "--static-shapes"),
    ]


def tiny_config(train: Path | str, valid: Path | str | None = None, **extra: Any):
    from textrnn.config import load_config
    from textrnn.sentiment.config import SentimentConfig

    return load_config(SentimentConfig, None, tiny_overrides(train, valid, **extra))


def train_tiny(
    run_dir: Path,
    train: Path | str,
    valid: Path | str | None = None,
    restart: bool = False,
    **extra: Any,
):
    """Train the tiny model quietly; return the validation metrics."""
    from textrnn import sentiment
    from textrnn.training import fit

    config = tiny_config(train, valid, **extra)
    return fit.train(
        sentiment.TASK, config, run_dir, restart=restart, echo=lambda line: None, verbose=0
    )


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Pythons: quiet, CPU-only, textrnn importable."""
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class SentimentRun:
    run_dir: Path
    train: Path
    valid: Path
    config: Any
