"""Keras callbacks of every training run: NaN guard, atomic checkpoints, epoch lines."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np

from textrnn.fileio import atomic_path


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first NaN / inf loss and remember where, for a clear error."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.failed_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` whose files appear whole or not at all (temporary file, then rename)."""

    def _save_model(self, epoch, batch, logs):
        model = self.model
        save_weights = model.save_weights

        def atomic_save_weights(filepath, overwrite=True, **kwargs):
            with atomic_path(filepath) as tmp:
                save_weights(tmp, overwrite=True, **kwargs)

        object.__setattr__(model, "save_weights", atomic_save_weights)
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            object.__delattr__(model, "save_weights")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch with every metric, for logs that are not terminals."""

    def __init__(self, echo: Callable[[str], None], total_epochs: int | None) -> None:
        super().__init__()
        self.echo, self.total_epochs, self.started = echo, total_epochs, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(
            f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate"
        )
        self.echo(
            f"epoch {epoch + 1}{f'/{self.total_epochs}' if self.total_epochs else ''} "
            f"({time.perf_counter() - self.started:.1f} s): {metrics}"
        )
