"""Invoking the `textrnn` app in process and checking the error contract."""

from __future__ import annotations

from typer.testing import CliRunner

from textrnn.cli.main import app


def invoke(runner: CliRunner, args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def assert_user_error(result, *needles):
    """Exit code 2, one line on stderr naming what to fix, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
