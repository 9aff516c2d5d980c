"""Learning-rate schedules as a fraction of the peak: over steps, or over a time budget.

`peak_fraction(kind, progress)` is the one definition of each shape, with
`progress` in [0, 1] of the run: `make_optimizer` uses Keras's own schedules
for the step-based cosine and linear shapes (as before) and `SlantedTriangular`
for ULMFiT's; `TimeBudget` drives the learning rate from the fraction of the
time budget spent, so the same shape fits a run of any length.

Shapes (of the peak learning rate):

- constant: 1;
- cosine: from 1 down to 0.05, half a cosine;
- linear: from 1 down to 0.05;
- slanted (Howard & Ruder 2018, slanted triangular): up from 1/32 to 1 over the
  first 10% of the run, then linearly down to 1/32.
"""

from __future__ import annotations

import math
import time

import keras

FLOOR = 0.05  # cosine and linear end at 5% of the peak
SLANTED_CUT = 0.1  # fraction of the run spent rising
SLANTED_RATIO = 32.0  # peak / lowest learning rate


def peak_fraction(kind: str, progress: float) -> float:
    """The learning rate at `progress` (0: start, 1: end) as a fraction of the peak."""
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - (1.0 - FLOOR) * progress
    if kind == "slanted":
        if progress < SLANTED_CUT:
            rise = progress / SLANTED_CUT
        else:
            rise = 1.0 - (progress - SLANTED_CUT) / (1.0 - SLANTED_CUT)
        return (1.0 + rise * (SLANTED_RATIO - 1.0)) / SLANTED_RATIO
    return 1.0


@keras.saving.register_keras_serializable(package="textrnn")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular learning rate over `total_steps` (see `peak_fraction`)."""

    def __init__(self, peak: float, total_steps: int):
        self.peak = peak
        self.total_steps = max(1, int(total_steps))

    def __call__(self, step):
        progress = keras.ops.minimum(keras.ops.cast(step, "float32") / self.total_steps, 1.0)
        rise = keras.ops.where(
            progress < SLANTED_CUT,
            progress / SLANTED_CUT,
            1.0 - (progress - SLANTED_CUT) / (1.0 - SLANTED_CUT),
        )
        return self.peak * (1.0 + rise * (SLANTED_RATIO - 1.0)) / SLANTED_RATIO

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps}


class TimeBudget(keras.callbacks.Callback):
    """Fit the learning-rate schedule to a time budget and stop training when it is spent.

    The learning rate at each batch is `peak * peak_fraction(kind, spent / budget)`
    (after `warmup_steps` of linear warm-up), measured from the start of
    training (compilation and validation included). Training stops early
    enough to leave the last validation pass (its measured duration) inside the
    budget; the epoch cut short is validated and checkpointed like any other,
    so the best weights are kept.

    Args:
        seconds: the budget.
        peak: the peak learning rate.
        kind: "constant" | "cosine" | "linear" | "slanted".
        warmup_steps: steps of linear warm-up from 0.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, seconds: float, peak: float, kind: str, warmup_steps: int = 0, clock=time.monotonic
    ):
        super().__init__()
        self.seconds, self.peak, self.kind, self.warmup_steps = seconds, peak, kind, warmup_steps
        self.clock = clock
        self.started = 0.0
        self.steps = 0
        self.validation_seconds = 0.0
        self._validation_started = 0.0
        self.spent = False  # the budget ended the run

    def progress(self) -> float:
        return (self.clock() - self.started) / self.seconds

    def learning_rate(self) -> float:
        warmup = min(1.0, (self.steps + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.peak * warmup * peak_fraction(self.kind, self.progress())

    def on_train_begin(self, logs=None):
        if not self.started:  # a resumed run calls `fit` twice: one budget for both
            self.started = self.clock()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.learning_rate())

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.clock() + self.validation_seconds >= self.started + self.seconds:
            self.spent = True
            self.model.stop_training = True

    def on_test_begin(self, logs=None):
        self._validation_started = self.clock()

    def on_test_end(self, logs=None):
        self.validation_seconds = self.clock() - self._validation_started
