"""Sentiment test fixtures (the shared tiny run, `sentiment_run`, is in tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import SentimentRun


@pytest.fixture
def run_copy(sentiment_run: SentimentRun, tmp_path: Path) -> Path:
    """A writable copy of the shared tiny run, for tests that change or damage it."""
    return Path(shutil.copytree(sentiment_run.run_dir, tmp_path / "run"))
