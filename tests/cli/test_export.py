"""`textrnn <task> export`, written once for every task (cli/export.py)."""

from __future__ import annotations

from .invoke import assert_user_error as _assert_user_error
from .invoke import invoke as _invoke


def test_export_writes_the_next_version(runner, sentiment_run, tmp_path):
    out = tmp_path / "exports"
    (out / "3").mkdir(parents=True)
    result = _invoke(
        runner, ["sentiment", "export", "--run-dir", sentiment_run.run_dir, "--out", out]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"exported {out / '4'}"
    assert (out / "4" / "saved_model.pb").is_file() and not any((out / "3").iterdir())
    _assert_user_error(
        _invoke(runner, ["sentiment", "export", "--run-dir", tmp_path / "nope", "--out", out]),
        "not found",
    )


def test_every_task_has_the_one_export_command(runner):
    from textrnn import tasks

    for entry in tasks.TABLE:
        result = _invoke(runner, [entry.command, "export", "--help"])
        assert result.exit_code == 0, result.output
        assert "--run-dir" in result.stdout and "--out" in result.stdout


def test_export_refuses_a_run_of_another_task(runner, sentiment_run, tmp_path):
    result = _invoke(
        runner, ["lm", "export", "--run-dir", sentiment_run.run_dir, "--out", tmp_path / "lm"]
    )
    _assert_user_error(result, "textrnn sentiment export")
    assert not (tmp_path / "lm").exists()
