"""Fault tolerance: SIGKILL mid-epoch and resume at the step, damaged backups and weights, unwritable run dirs."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import (
    PYTHON,
    SUBPROCESS_TIMEOUT,
    sentiment_rows,
    subprocess_env,
    tiny_config,
    train_tiny,
    write_tiny_recipe,
    write_tsv,
)

from textrnn import backup as backup_lib
from textrnn import sentiment, training
from textrnn.errors import RunDirError


def _train_command(tmp_path, run_dir):
    return [
        PYTHON,
        "-m",
        "textrnn",
        "sentiment",
        "train",
        "--config",
        str(tmp_path / "tiny.toml"),
        "--train",
        str(tmp_path / "train.tsv"),
        "--valid",
        str(tmp_path / "valid.tsv"),
        "--run-dir",
        str(run_dir),
        "--strategy",
        "cpu",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--backup-every-steps",
        "10",
    ]


def _run(command, cwd):
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(4 * SUBPROCESS_TIMEOUT)
def test_sigkill_mid_epoch_resumes_at_the_last_backup_and_matches_an_uninterrupted_run(tmp_path):
    write_tiny_recipe(tmp_path / "tiny.toml")
    write_tsv(tmp_path / "train.tsv", sentiment_rows(400, seed=1))  # 200 steps / epoch at batch 2
    write_tsv(tmp_path / "valid.tsv", sentiment_rows(40, seed=2))
    reference = _run(_train_command(tmp_path, tmp_path / "reference"), tmp_path)
    reference_metrics = json.loads((tmp_path / "reference" / "state.json").read_text())["metrics"]

    run_dir = tmp_path / "run"
    kill_after = random.Random().randint(25, 330)  # a random global step, usually mid-epoch
    process = subprocess.Popen(
        _train_command(tmp_path, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    index = run_dir / "backup" / backup_lib.INDEX_FILE
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if json.loads(index.read_text())["latest"]["global_step"] >= kill_after:
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.05)
        time.sleep(random.random() * 0.2)
        assert process.poll() is None, "training finished before it could be killed; use more data"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    saved = backup_lib.read_points(run_dir / "backup")[0][0]
    assert not (run_dir / "model.weights.h5").exists()

    output = _run(_train_command(tmp_path, run_dir), tmp_path)
    first_line = output.splitlines()[0]
    assert f"resumed from epoch {saved.epoch + 1}, step {saved.step}" in first_line, output[:500]
    assert saved.global_step >= kill_after - 10  # lost at most one backup interval
    # The final epoch's validation metrics match the uninterrupted run (same seed, replayed data order).
    final, expected = _last_epoch(output), _last_epoch(reference)
    assert final["val_accuracy"] == pytest.approx(expected["val_accuracy"], abs=0.05)
    assert final["val_loss"] == pytest.approx(expected["val_loss"], abs=0.02)
    assert reference_metrics  # the reference wrote its best metrics too
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 2
    assert not list(run_dir.rglob(".tmp-*"))  # no half-written files left behind


def _last_epoch(output):
    line = [line for line in output.splitlines() if line.startswith("epoch 2/2")][-1]
    words = line.split("): ")[1].split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words), 2)}


def _backed_up_run(tmp_path, epochs=1, **extra):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(40, seed=1))
    valid = write_tsv(tmp_path / "valid.tsv", sentiment_rows(8, seed=2))
    extra = {"training.backup_every_steps": 4, "training.epochs": epochs, **extra}
    train_tiny(tmp_path / "run", train, valid, **extra)
    return tmp_path / "run", train, valid, extra


def test_backups_rotate_two_verified_files(tmp_path):
    run_dir, *_ = _backed_up_run(tmp_path)
    points, problems = backup_lib.read_points(run_dir / "backup")
    assert not problems and len(points) == 2
    latest, previous = points
    assert (latest.epoch, latest.step) == (1, 0)  # the epoch-end backup
    last_periodic = latest.global_step // 4 * 4  # the one before: the last every-4-steps backup
    assert (previous.epoch, previous.step, previous.global_step) == (
        0,
        last_periodic,
        last_periodic,
    )
    assert sorted(p.name for p in (run_dir / "backup").glob("ckpt-*")) == sorted(
        [latest.file, previous.file]
    )


def test_truncated_latest_backup_is_reported_and_the_previous_one_used(tmp_path):
    run_dir, train, valid, extra = _backed_up_run(tmp_path)
    latest, previous = backup_lib.read_points(run_dir / "backup")[0]
    path = run_dir / "backup" / latest.file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    points, problems = backup_lib.read_points(run_dir / "backup")
    assert points == [previous] and "truncated" in problems[0]

    lines = []
    config = tiny_config(train, valid, **{**extra, "training.epochs": 2})
    training.train(sentiment, config, run_dir, echo=lines.append, verbose=0)
    assert f"resumed from epoch 1, step {previous.step}" in lines[0]
    assert any("truncated" in line and "previous backup" in line for line in lines[:3])
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 2


def test_a_backup_that_passes_the_checksum_but_does_not_load_falls_back(tmp_path, monkeypatch):
    run_dir, train, valid, extra = _backed_up_run(tmp_path)
    latest, previous = backup_lib.read_points(run_dir / "backup")[0]
    original = backup_lib.load_point

    def flaky(model, directory, point):
        if point == latest:
            raise OSError("unable to open file (truncated file)")
        return original(model, directory, point)

    monkeypatch.setattr(backup_lib, "load_point", flaky)
    lines = []
    training.train(
        sentiment,
        tiny_config(train, valid, **{**extra, "training.epochs": 2}),
        run_dir,
        echo=lines.append,
        verbose=0,
    )
    assert any("does not load" in line for line in lines)
    assert any(f"previous backup instead: epoch 1, step {previous.step}" in line for line in lines)


def test_truncated_final_weights_fall_back_to_the_best_checkpoint(sentiment_run, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(sentiment_run.run_dir, run_dir)
    weights = run_dir / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        sentiment.load_run(run_dir)
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


def test_temporaries_of_a_killed_writer_are_removed_on_resume_and_live_ones_kept(tmp_path):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, write_tsv(tmp_path / "t.tsv", sentiment_rows(8)))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(SUBPROCESS_TIMEOUT)
    stale = run_dir / "backup" / f".tmp-{dead.pid}-ckpt-000000007-e1s7.weights.h5"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a file")
    stale_text = run_dir / f".tmp-{dead.pid}-state.json.abc.tmp"
    stale_text.write_text("{")
    live = run_dir / f".tmp-{os.getpid()}-model.weights.h5"
    live.write_bytes(b"being written")
    training.prepare_run_dir(run_dir, tiny_config(tmp_path / "t.tsv"), restart=False)
    assert not stale.exists() and not stale_text.exists()
    assert live.exists()
