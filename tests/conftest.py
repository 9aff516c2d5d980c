"""Fixtures: tiny seeded data and one tiny trained run per test session.

Sections:
    environment   quiet, CPU-only TensorFlow (set before anything imports it)
    (plain helpers: tests/helpers.py)
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

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import (  # noqa: E402
    SentimentRun,
    sentiment_rows,
    tiny_config,
    train_tiny,
    write_tsv,
)


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
