"""The error contract of every command (cli/runner.py): exit 1 with one line, --debug, SIGPIPE."""

from __future__ import annotations

import subprocess

from helpers import (
    PYTHON,
    SUBPROCESS_TIMEOUT,
    subprocess_env,
)

from .invoke import invoke as _invoke


def test_internal_error_exits_1_and_debug_shows_the_traceback(
    runner, sentiment_run, tmp_path, monkeypatch
):
    from textrnn import sentiment

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(sentiment, "evaluate", boom)
    args = [
        "sentiment",
        "evaluate",
        "--run-dir",
        sentiment_run.run_dir,
        "--data",
        sentiment_run.valid,
    ]
    result = _invoke(runner, args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: internal error: RuntimeError: boom (rerun with --debug for the traceback)"
    ]
    debug = _invoke(runner, ["--debug", *args])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(sentiment_export, tmp_path):
    """`textrnn ... | head`: exit 141 (as if SIGPIPE had ended it), no "internal error"."""
    stdin = tmp_path / "texts.txt"
    stdin.write_text("a good film with a long review line\n" * 20_000)  # ~1 MB of output
    with open(stdin, "rb") as texts:
        process = subprocess.Popen(
            [PYTHON, "-m", "textrnn", "sentiment", "predict", "--model", str(sentiment_export)],
            stdin=texts,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        try:
            assert process.stdout.read(100)  # the first answers came; then the reader leaves
            process.stdout.close()
            _, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 141, stderr
    assert b"internal error" not in stderr and b"Traceback" not in stderr


def test_each_command_declares_how_tensorflow_starts(monkeypatch):
    from textrnn.cli.runner import Startup, default_startup, training_startup
    from textrnn.cli.serve import serving_startup

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert default_startup({"strategy": "mirrored"}) == Startup()
    assert training_startup({"strategy": "mirrored"}) == Startup(cpu_devices=2)
    assert training_startup({"strategy": "multiworker"}) == Startup(initialize=False)
    assert training_startup({"strategy": None}) == Startup()
    threads = {"tensorflow_intra_op_parallelism": 1, "tensorflow_inter_op_parallelism": 3}
    assert serving_startup(threads) == Startup(intra_op_threads=1, inter_op_threads=3)
    monkeypatch.setenv("TF_CONFIG", "{}")  # a multi-worker job configures collectives first
    assert default_startup({}) == Startup(initialize=False)
    assert training_startup({"strategy": "auto"}) == Startup(initialize=False)
