"""`textrnn --help`, `--version` and the sub-apps every task registers."""

from __future__ import annotations

from .invoke import invoke as _invoke

# ----------------------------------------------------------------------------- help


def test_help_lists_commands(runner):
    result = _invoke(runner, ["--help"])
    assert result.exit_code == 0 and "sentiment" in result.stdout
    result = _invoke(runner, ["sentiment", "--help"])
    assert result.exit_code == 0
    for name in ("train", "evaluate", "predict", "export"):
        assert name in result.stdout
    result = _invoke(runner, ["sentiment", "train", "--help"])
    for option in (
        "--config",
        "--train",
        "--valid",
        "--text-column",
        "--label-column",
        "--epochs",
        "--batch-size",
        "--run-dir",
        "--strategy",
        "--seed",
        "--restart",
        "--encoding",
    ):
        assert option in result.stdout, option
    assert _invoke(runner, ["--version"]).stdout.startswith("textrnn ")


def test_every_task_in_the_table_has_a_sub_app(runner):
    from textrnn import tasks

    for entry in tasks.TABLE:
        result = _invoke(runner, [entry.command, "--help"])
        assert result.exit_code == 0, (entry.command, result.output)
        for name in ("train", "evaluate", "export"):
            assert name in result.stdout, (entry.command, name)
