"""Optimizers and learning-rate schedules from the [training] section."""

from __future__ import annotations

import keras
import pytest

from textrnn.config import TrainingConfig
from textrnn.training.optimizer import make_optimizer


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
    optimizer = make_optimizer(config, total_steps=20)
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
