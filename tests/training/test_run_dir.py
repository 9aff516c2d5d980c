"""The run directory: preparing and clearing it, damaged weights, unwritable and shared dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import SUBPROCESS_TIMEOUT, sentiment_rows, train_tiny, write_tsv
from textrnn import sentiment
from textrnn.errors import RunDirError
from textrnn.training.run_dir import RUN_ENTRIES, clear_run_dir, prepare_run_dir


def test_prepare_run_dir_rejects_unwritable_paths_and_clear_keeps_foreign_files(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot write"):
        prepare_run_dir(blocker / "run", object(), restart=False)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "my_notes.txt").write_text("keep me")
    clear_run_dir(run_dir, ())
    assert sorted(p.name for p in run_dir.iterdir()) == ["my_notes.txt"]


def test_clear_run_dir_deletes_only_training_and_task_entries_not_kept(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "ckpt-1.weights.h5").write_bytes(b"x")
    (run_dir / "logs").mkdir()
    (run_dir / "state.json").write_text("{}")
    (run_dir / "model.weights.h5").write_bytes(b"x")
    (run_dir / "tokenizer").mkdir()  # a task's directory
    (run_dir / "tokenizer" / "vocab.txt").write_text("a\n")
    (run_dir / "labels.json").write_text("[]")  # a task's file
    (run_dir / "vocab.txt").write_text("another task's name: not named, so kept")
    (run_dir / "notes").mkdir()
    (run_dir / "notes" / "labels.json").write_text("nested: not an entry of the run")
    shared = tmp_path / "shared"  # outside the run, reached through a task entry's symlink
    shared.mkdir()
    (shared / "words.txt").write_text("foreign")
    (run_dir / "vocabulary").symlink_to(shared, target_is_directory=True)
    task_files = ("tokenizer", "labels.json", "vocabulary", "not_written.json")
    clear_run_dir(run_dir, task_files, keep=("logs",))
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs", "notes", "vocab.txt"]
    assert (run_dir / "notes" / "labels.json").is_file()
    assert (shared / "words.txt").read_text() == "foreign"  # the link went, not its target
    assert "logs" in RUN_ENTRIES  # kept only because it was named in `keep`
    clear_run_dir(run_dir, ())
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes", "vocab.txt"]
    clear_run_dir(tmp_path / "missing", ("labels.json",))  # nothing there: nothing to do


def test_truncated_final_weights_fall_back_to_the_best_checkpoint(sentiment_run, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(sentiment_run.run_dir, run_dir)
    weights = run_dir / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        sentiment.TASK.load_run(run_dir)
    assert "model.weights.h5" in caplog.text and "damaged" in caplog.text


@pytest.mark.parametrize("layout", ["run_dir_is_a_file", "parent_is_a_file"])
def test_unwritable_run_dir_fails_before_training_and_writes_nothing(tmp_path, layout):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    run_dir = blocker if layout == "run_dir_is_a_file" else blocker / "run"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RunDirError, match="cannot write to .*--run-dir"):
        train_tiny(run_dir, train)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() != 0 and sys.platform != "linux", reason="needs chmod semantics")
def test_read_only_run_dir_is_a_clear_cli_error(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        if os.access(run_dir, os.W_OK):  # root ignores permissions: emulate with a file in the way
            run_dir.chmod(0o700)
            run_dir.rmdir()
            run_dir.write_text("not a directory")
        from typer.testing import CliRunner

        from textrnn.cli.main import app

        result = CliRunner().invoke(
            app, ["sentiment", "train", "--train", str(train), "--run-dir", str(run_dir)]
        )
        assert result.exit_code == 2
        assert "cannot write to" in result.output and "--run-dir" in result.output
    finally:
        if run_dir.is_dir():
            run_dir.chmod(0o700)


def test_temporaries_of_a_killed_writer_are_removed_on_resume_and_live_ones_kept(
    sentiment_run, tmp_path
):
    run_dir = shutil.copytree(sentiment_run.run_dir, tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(SUBPROCESS_TIMEOUT)
    stale = run_dir / "backup" / f".tmp-{dead.pid}-ckpt-000000007-e1s7.weights.h5"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a file")
    stale_text = run_dir / f".tmp-{dead.pid}-state.json.abc.tmp"
    stale_text.write_text("{")
    live = run_dir / f".tmp-{os.getpid()}-model.weights.h5"
    live.write_bytes(b"being written")
    task = sentiment.TASK
    assert prepare_run_dir(run_dir, sentiment_run.config, False, task.run_files) == (run_dir, True)
    assert not stale.exists() and not stale_text.exists()
    assert live.exists()
