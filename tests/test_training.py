"""Shared training: strategies, repeatability, divergence, optimizers, run directories."""

from __future__ import annotations

import json
import subprocess

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    PYTHON,
    REPO,
    SUBPROCESS_TIMEOUT,
    sentiment_rows,
    subprocess_env,
    train_tiny,
    write_tsv,
)

from textrnn import training
from textrnn.config import TrainingConfig
from textrnn.errors import ConfigError, RunDirError, UserError

# Two logical CPU devices must be configured before TensorFlow initializes its
# runtime, so this runs in its own process and leaves other tests unaffected.
MIRRORED = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from helpers import train_tiny
from textrnn import training
lines = []
strategy = training.choose_strategy("mirrored")
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

    monkeypatch.setattr(training, "choose_strategy", lambda *args: TwoReplicas())
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(8))
    with pytest.raises(ConfigError, match="--batch-size 3"):
        train_tiny(tmp_path / "run", train, **{"training.batch_size": 3})


def test_strategy_choice_on_cpu(monkeypatch):
    assert training.choose_strategy("cpu") is tf.distribute.get_strategy()
    assert training.choose_strategy("auto").num_replicas_in_sync == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        training.choose_strategy("multiworker")


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(
            optimizer="adamw", weight_decay=0.01, lr_schedule="cosine", warmup_steps=3, clipnorm=1.0
        ),
        dict(optimizer="sgd", lr_schedule="linear"),
        dict(optimizer="rmsprop", lr_schedule="cosine"),
    ],
)
def test_optimizers_and_schedules(settings):
    config = TrainingConfig(learning_rate=0.01, **settings)
    optimizer = training.make_optimizer(config, total_steps=20)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    if settings.get("clipnorm"):
        assert optimizer.clipnorm == 1.0
    rate = optimizer.learning_rate
    if settings.get("lr_schedule") == "cosine" and settings.get("warmup_steps"):
        schedule = optimizer._learning_rate
        assert float(schedule(0)) == pytest.approx(0.0)
        assert float(schedule(3)) == pytest.approx(0.01)
        assert float(schedule(20)) < 0.01
    else:
        assert float(rate) == pytest.approx(0.01)


def test_prepare_run_dir_rejects_unwritable_paths_and_clear_keeps_foreign_files(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot write"):
        training.prepare_run_dir(blocker / "run", object(), restart=False)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "my_notes.txt").write_text("keep me")
    training.clear_run_dir(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["my_notes.txt"]


def test_set_seed_makes_keras_initialization_repeatable():
    training.set_seed(3)
    a = keras.layers.Dense(4)
    a.build((None, 3))
    training.set_seed(3)
    b = keras.layers.Dense(4)
    b.build((None, 3))
    np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
