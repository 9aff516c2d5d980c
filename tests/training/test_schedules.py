"""Learning-rate shapes, the slanted triangle, and the time budget (a fake clock, a real run)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from helpers import sentiment_rows, train_tiny, write_tsv
from textrnn.config import TrainingConfig
from textrnn.training.optimizer import make_optimizer
from textrnn.training.schedules import SlantedTriangular, TimeBudget, peak_fraction


def test_shapes_start_at_the_peak_and_end_where_documented():
    assert peak_fraction("constant", 0.7) == 1.0
    assert peak_fraction("cosine", 0.0) == pytest.approx(1.0)
    assert peak_fraction("cosine", 1.0) == pytest.approx(0.05)
    assert peak_fraction("linear", 0.5) == pytest.approx(0.525)
    assert peak_fraction("slanted", 0.0) == pytest.approx(1 / 32)
    assert peak_fraction("slanted", 0.1) == pytest.approx(1.0)
    assert peak_fraction("slanted", 1.0) == pytest.approx(1 / 32)


def test_slanted_triangular_schedule_over_steps_matches_the_shape():
    optimizer = make_optimizer(TrainingConfig(learning_rate=0.01, lr_schedule="slanted"), 200)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, SlantedTriangular)
    for step in (0, 10, 20, 21, 110, 200, 300):
        expected = 0.01 * peak_fraction("slanted", min(step / 200, 1.0))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_budget_drives_the_rate_from_the_time_spent_and_stops_in_time():
    clock = FakeClock()
    budget = TimeBudget(60.0, 0.01, "cosine", warmup_steps=2, clock=clock)
    model = SimpleNamespace(
        optimizer=SimpleNamespace(learning_rate=keras.Variable(0.0)), stop_training=False
    )
    budget.set_model(model)
    budget.on_train_begin()
    rates = []
    for seconds in (0.0, 15.0, 30.0):
        clock.now = 100.0 + seconds
        budget.on_train_batch_begin(0)
        rates.append(float(model.optimizer.learning_rate))
        budget.on_train_batch_end(0)
    np.testing.assert_allclose(
        rates,
        [
            0.01 * 0.5 * peak_fraction("cosine", 0.0),
            0.01 * peak_fraction("cosine", 0.25),
            0.01 * peak_fraction("cosine", 0.5),
        ],
        rtol=1e-6,
    )
    assert not model.stop_training
    budget.on_test_begin()
    clock.now += 10.0  # a validation pass of 10 s: stop 10 s before the end
    budget.on_test_end()
    clock.now = 100.0 + 49.0
    budget.on_train_batch_end(0)
    assert not model.stop_training
    clock.now = 100.0 + 50.0
    budget.on_train_batch_end(0)
    assert model.stop_training and budget.spent


def test_training_under_a_time_budget_stops_and_keeps_the_best_weights(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(40))
    # A budget shorter than the first step: the run stops after it, validated and saved.
    train_tiny(tmp_path / "run", train, **{"training.time_budget_minutes": 0.001})
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["time_budget_spent"] is True and state["epochs_completed"] == 1
    assert (tmp_path / "run" / "model.weights.h5").exists()
    assert "val_accuracy" in state["metrics"]
