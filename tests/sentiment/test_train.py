"""Training a classifier through its task contract: the run directory it leaves, resuming."""

from __future__ import annotations

import json

import pytest

from helpers import tiny_config, train_tiny
from textrnn import sentiment
from textrnn.errors import RunDirError
from textrnn.training.fit import train
from textrnn.training.run_dir import load_run_config


def test_training_leaves_a_complete_run_directory(sentiment_run):
    run_dir = sentiment_run.run_dir
    for name in (
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "labels.json",
        "model.weights.h5",
        "state.json",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.weights.h5").is_file()
    assert (run_dir / "checkpoints" / "last.weights.h5").is_file()
    assert any((run_dir / "logs").rglob("*tfevents*"))
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 1
    assert json.loads((run_dir / "labels.json").read_text())["values"] == ["0", "1"]
    config = load_run_config(run_dir, sentiment.Config)
    assert config == sentiment_run.config
    assert not list(run_dir.glob(".tmp*")) and not list(run_dir.glob(".*.tmp"))


def test_rerun_resumes_and_changed_model_refuses_then_restart_starts_over(sentiment_run, run_copy):
    run_dir = run_copy
    extra = {"model.stack.bidirectional": True, "model.pooling": "max"}
    lines = []
    config = tiny_config(sentiment_run.train, sentiment_run.valid, **extra)
    train(sentiment.TASK, config, run_dir, echo=lines.append, verbose=0)
    assert any("nothing to do" in line for line in lines)  # same command again: already complete

    with pytest.raises(RunDirError, match=r"different \[model\].*--restart"):
        train_tiny(run_dir, sentiment_run.train, sentiment_run.valid, **{"model.stack.units": 6})
    assert (
        json.loads((run_dir / "config.json").read_text())["model"]["stack"]["units"] == 4
    )  # untouched

    lines.clear()
    config = tiny_config(sentiment_run.train, sentiment_run.valid, **{"model.stack.units": 6})
    train(sentiment.TASK, config, run_dir, restart=True, echo=lines.append, verbose=0)
    assert not any("resuming" in line or "nothing to do" in line for line in lines)
    assert json.loads((run_dir / "config.json").read_text())["model"]["stack"]["units"] == 6
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 1
    sentiment.load_run(run_dir)  # the new weights fit the new model


def test_more_epochs_continue_from_the_backup(sentiment_run, run_copy):
    run_dir = run_copy
    lines = []
    config = tiny_config(
        sentiment_run.train,
        sentiment_run.valid,
        **{"model.stack.bidirectional": True, "model.pooling": "max", "training.epochs": 2},
    )
    train(sentiment.TASK, config, run_dir, echo=lines.append, verbose=0)
    assert any(line.startswith("resuming") for line in lines)
    assert any("trained 1 epoch(s)" in line for line in lines)
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 2
