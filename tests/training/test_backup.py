"""Step backups: SIGKILL mid-epoch and resume at the step, rotation, damaged backups."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

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
from textrnn import sentiment
from textrnn.training import backup as backup_lib
from textrnn.training.fit import train


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
    # The final epoch's validation metrics match the uninterrupted run (same seed, replayed
    # data order).
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


BACKED_UP = {"training.backup_every_steps": 4, "training.epochs": 1}


@pytest.fixture(scope="module")
def backed_up_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """One epoch of the tiny model with a backup every 4 steps, trained once (read-only)."""
    base = tmp_path_factory.mktemp("backed_up")
    train_file = write_tsv(base / "train.tsv", sentiment_rows(40, seed=1))
    valid = write_tsv(base / "valid.tsv", sentiment_rows(8, seed=2))
    train_tiny(base / "run", train_file, valid, **BACKED_UP)
    return base / "run", train_file, valid


def _backed_up_copy(backed_up_run, tmp_path):
    """A copy of `backed_up_run` to change, its data files and overrides."""
    run_dir, train_file, valid = backed_up_run
    return shutil.copytree(run_dir, tmp_path / "run"), train_file, valid, BACKED_UP


def test_backups_rotate_two_verified_files(backed_up_run):
    run_dir = backed_up_run[0]
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


def test_truncated_latest_backup_is_reported_and_the_previous_one_used(backed_up_run, tmp_path):
    run_dir, train_file, valid, extra = _backed_up_copy(backed_up_run, tmp_path)
    latest, previous = backup_lib.read_points(run_dir / "backup")[0]
    path = run_dir / "backup" / latest.file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    points, problems = backup_lib.read_points(run_dir / "backup")
    assert points == [previous] and "truncated" in problems[0]

    lines = []
    config = tiny_config(train_file, valid, **{**extra, "training.epochs": 2})
    train(sentiment.TASK, config, run_dir, echo=lines.append, verbose=0)
    assert f"resumed from epoch 1, step {previous.step}" in lines[0]
    assert any("truncated" in line and "previous backup" in line for line in lines[:3])
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 2


def test_a_backup_that_passes_the_checksum_but_does_not_load_falls_back(
    backed_up_run, tmp_path, monkeypatch
):
    run_dir, train_file, valid, extra = _backed_up_copy(backed_up_run, tmp_path)
    latest, previous = backup_lib.read_points(run_dir / "backup")[0]
    original = backup_lib.load_point

    def flaky(model, directory, point):
        if point == latest:
            raise OSError("unable to open file (truncated file)")
        return original(model, directory, point)

    monkeypatch.setattr(backup_lib, "load_point", flaky)
    lines = []
    train(
        sentiment.TASK,
        tiny_config(train_file, valid, **{**extra, "training.epochs": 2}),
        run_dir,
        echo=lines.append,
        verbose=0,
    )
    assert any("does not load" in line for line in lines)
    assert any(f"previous backup instead: epoch 1, step {previous.step}" in line for line in lines)
