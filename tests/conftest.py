"""Shared fixtures: tiny seeded data and one tiny trained run per test session.

Sections:
    environment   quiet, CPU-only TensorFlow (set before anything imports it)
    helpers       writers for tiny corpora, tiny config overrides, subprocess env
    data          per-test tiny files in tmp_path
    sentiment     one session-scoped tiny trained run and its export

Tests must not retrain when a shared run will do: use `sentiment_run` /
`sentiment_export` (read-only; copy the run dir before changing it).
"""

from __future__ import annotations

import os

# ----------------------------------------------------------------------------- environment
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 180  # seconds; every subprocess a test starts gets one

# ----------------------------------------------------------------------------- helpers

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
    from textrnn.config import SentimentConfig, load_config

    return load_config(SentimentConfig, None, tiny_overrides(train, valid, **extra))


def train_tiny(
    run_dir: Path,
    train: Path | str,
    valid: Path | str | None = None,
    restart: bool = False,
    **extra: Any,
):
    """Train the tiny model quietly; return the validation metrics."""
    from textrnn import sentiment, training

    config = tiny_config(train, valid, **extra)
    return training.train(
        sentiment, config, run_dir, restart=restart, echo=lambda line: None, verbose=0
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


PYTHON = sys.executable


@dataclass(frozen=True)
class SentimentRun:
    run_dir: Path
    train: Path
    valid: Path
    config: Any


def pytest_configure(config: pytest.Config) -> None:
    # textrnn.training silences these two Keras warnings; pytest resets filters per test.
    for message in ("Your input ran out of data", "Skipping variable loading for optimizer"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:UserWarning")


# ----------------------------------------------------------------------------- data


@pytest.fixture
def tiny_tsv(tmp_path: Path) -> Path:
    """40 labelled rows in `text` / `label` columns."""
    return write_tsv(tmp_path / "train.tsv", sentiment_rows(40))


# ----------------------------------------------------------------------------- sentiment


@pytest.fixture(scope="session")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory) -> SentimentRun:
    """A tiny word-level BiLSTM with max pooling, trained one epoch once per session (read-only)."""
    base = tmp_path_factory.mktemp("sentiment")
    train = write_tsv(base / "train.tsv", sentiment_rows(40, seed=1))
    valid = write_tsv(base / "valid.tsv", sentiment_rows(8, seed=2))
    run_dir = base / "run"
    extra = {"model.stack.bidirectional": True, "model.pooling": "max"}
    train_tiny(run_dir, train, valid, **extra)
    return SentimentRun(run_dir, train, valid, tiny_config(train, valid, **extra))


@pytest.fixture(scope="session")
def sentiment_serve(sentiment_run: SentimentRun):
    """`serving_default` of `sentiment_run`, built in-process once."""
    from textrnn import export

    return export.load_serving(sentiment_run.run_dir, expected_task="sentiment").signatures[
        "serving_default"
    ]


@pytest.fixture(scope="session")
def sentiment_export(sentiment_run: SentimentRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sentiment_run` exported once: the version directory (…/1)."""
    from textrnn import export

    return export.export_run(
        sentiment_run.run_dir, tmp_path_factory.mktemp("exports") / "sentiment"
    )
