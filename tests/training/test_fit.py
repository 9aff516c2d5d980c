"""Fitting a task: mirrored replicas, repeatability, divergence, replica-divisible batches."""

from __future__ import annotations

import json
import subprocess

import h5py
import numpy as np
import pytest

from helpers import (
    PYTHON,
    REPO,
    SUBPROCESS_TIMEOUT,
    sentiment_rows,
    subprocess_env,
    train_tiny,
    write_tsv,
)
from textrnn.errors import ConfigError, UserError
from textrnn.training import fit

# Two logical CPU devices must be configured before TensorFlow initializes its
# runtime, so this runs in its own process and leaves other tests unaffected.
MIRRORED = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from helpers import train_tiny
from textrnn.training.strategy import choose_strategy
lines = []
strategy = choose_strategy("mirrored")
metrics = train_tiny(__import__("pathlib").Path(sys.argv[2]), sys.argv[1],
                     **{"training.strategy": "mirrored", "training.batch_size": 4})
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "metrics": metrics}))
"""


@pytest.mark.timeout(SUBPROCESS_TIMEOUT + 30)
def test_mirrored_strategy_over_two_logical_cpus_trains(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    result = subprocess.run(
        [PYTHON, "-c", MIRRORED, str(train), str(tmp_path / "run"), str(REPO / "tests")],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert np.isfinite(report["metrics"]["val_loss"])
    assert (tmp_path / "run" / "model.weights.h5").is_file()


def test_seeded_runs_are_repeatable(sentiment_run, tmp_path):
    train_tiny(
        tmp_path / "run",
        sentiment_run.train,
        sentiment_run.valid,
        **{"model.stack.bidirectional": True, "model.pooling": "max"},
    )

    def weights(path):
        values = []
        with h5py.File(path, "r") as handle:
            handle.visititems(
                lambda name, item: (
                    values.append((name, item[()])) if isinstance(item, h5py.Dataset) else None
                )
            )
        return values

    first, second = (
        weights(sentiment_run.run_dir / "model.weights.h5"),
        weights(tmp_path / "run" / "model.weights.h5"),
    )
    assert [name for name, _ in first] == [name for name, _ in second] and first
    for (name, a), (_, b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    state_a = json.loads((sentiment_run.run_dir / "state.json").read_text())["metrics"]
    state_b = json.loads((tmp_path / "run" / "state.json").read_text())["metrics"]
    assert state_a == state_b


def test_nan_loss_is_a_clear_error(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    with pytest.raises(UserError, match=r"NaN or infinite at epoch 1, step \d+.*--learning-rate"):
        train_tiny(
            tmp_path / "run", train, **{"training.learning_rate": 1e38, "training.optimizer": "sgd"}
        )
    assert not (tmp_path / "run" / "model.weights.h5").exists()


def test_batch_size_must_divide_across_replicas(tmp_path, monkeypatch):
    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setattr(fit, "choose_strategy", lambda *args: TwoReplicas())
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(8))
    with pytest.raises(ConfigError, match="--batch-size 3"):
        train_tiny(tmp_path / "run", train, **{"training.batch_size": 3})
