"""The optimizer a recipe's `[training]` section describes, and its XLA setting."""

from __future__ import annotations

from typing import Any

import keras

from textrnn.config import TrainingConfig
from textrnn.training.fused_adam import FusedAdam, FusedAdamW
from textrnn.training.schedules import SlantedTriangular


def make_optimizer(
    training: TrainingConfig, total_steps: int | None = None
) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule and gradient clipping."""
    learning_rate: Any = training.learning_rate
    decay_steps = max(1, (total_steps or 1000) - training.warmup_steps)
    if training.time_budget_minutes:
        pass  # `schedules.TimeBudget` sets the learning rate from the time spent
    elif training.stage_lr_decay:
        pass  # `layer_groups.GradualUnfreezing` runs one slanted triangle per stage
    elif training.lr_schedule == "slanted":
        learning_rate = SlantedTriangular(training.learning_rate, total_steps or 1000)
    elif training.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if training.warmup_steps else training.learning_rate,
            decay_steps,
            alpha=0.05,
            warmup_target=training.learning_rate if training.warmup_steps else None,
            warmup_steps=training.warmup_steps,
        )
    elif training.lr_schedule == "linear":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            training.learning_rate, decay_steps, end_learning_rate=training.learning_rate * 0.05
        )
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if training.clipnorm:
        kwargs["clipnorm"] = training.clipnorm
    if training.ema:
        kwargs.update(use_ema=True, ema_momentum=training.ema)
    if training.optimizer == "adam":
        return FusedAdam(**kwargs)
    if training.optimizer == "adamw":
        return FusedAdamW(weight_decay=training.weight_decay, **kwargs)
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    return keras.optimizers.SGD(momentum=0.9, **kwargs)


def jit_compile_flag(training: TrainingConfig) -> bool | str:
    """`training.jit_compile`; `auto` with static shapes means XLA (the TPU path)."""
    if training.jit_compile == "auto" and training.static_shapes:
        return True
    return {"auto": "auto", "true": True, "false": False}[training.jit_compile]
