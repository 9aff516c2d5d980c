"""Language-model fixtures: the tiny corpus and one tiny trained run per session (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from textrnn.tasks import ServingParts

from .tiny_lm import TEXT, train_lm


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "train.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_run(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-layer character LSTM with carried state and tied embeddings, trained one
    epoch once per session (read-only: copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    train_lm(run_dir, corpus_file, **{"data.carry_state": True, "model.tie_embeddings": True})
    return run_dir


@pytest.fixture(scope="session")
def char_parts(char_run: Path) -> ServingParts:
    """`char_run`'s serving parts, built in-process once (`.inference` is its LanguageModel)."""
    from textrnn import language_model

    return language_model.serving_signatures(language_model.load_run(char_run))
