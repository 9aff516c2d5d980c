"""Fixtures of the CLI tests: a CliRunner, and --debug off unless a test turns it on."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from textrnn.cli import runner as runner_module


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setitem(runner_module.STATE, "debug", False)
