"""Weight drop (DropConnect on the recurrent kernel, Merity et al. 2017's AWD-LSTM).

While training, each call draws one Bernoulli mask over the recurrent kernel
`(units, gates * units)`, zeroes those weights and rescales the rest by
`1 / (1 - rate)`; every step of every sequence in the batch uses the same
dropped kernel, so the recurrence stays one matrix product per step and the
fast CPU loop and cuDNN stay usable (recurrent dropout on `h` would rule both
out). At inference the kernel is used as it is.

`WeightDropMixin` does it for any Keras recurrent layer by swapping the cell's
`recurrent_kernel` for the dropped tensor while the layer's inner loop runs:
Keras's own loop, cuDNN and the fast loop (`textrnn.layers.fast_rnn`) all read
the kernel from there, so every path computes the same numbers from the same
mask (same seed, same mask). The gradient reaches the kernel variable through
the mask multiplication.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops


@contextlib.contextmanager
def _swapped_attribute(owner, name: str, value):
    """Set `owner.name = value` for the block (bypassing Keras's attribute tracking)."""
    original = owner.__dict__[name]
    object.__setattr__(owner, name, value)
    try:
        yield
    finally:
        object.__setattr__(owner, name, original)


class WeightDropMixin:
    """Adds `weight_drop` (a rate in [0, 1)) to a Keras recurrent layer; see the module."""

    def __init__(self, *args, weight_drop: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        self.weight_drop = weight_drop
        # Its own generator (the cell's draws the input-dropout masks), made only when
        # used: an unseeded generator takes its seed from Python's global random state,
        # which would shift every generator made after it.
        if weight_drop:
            self.weight_drop_seed_generator = keras.random.SeedGenerator(kwargs.get("seed"))

    def dropped_recurrent_kernel(self):
        """The recurrent kernel with one fresh mask applied (rescaled by 1 / (1 - rate))."""
        kernel = self.cell.recurrent_kernel
        keep = 1.0 - self.weight_drop
        noise = keras.random.uniform(
            ops.shape(kernel), dtype=kernel.dtype, seed=self.weight_drop_seed_generator
        )
        mask = ops.cast(noise < keep, kernel.dtype) / keep
        return ops.cast(kernel, self.compute_dtype) * ops.cast(mask, self.compute_dtype)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (training and self.weight_drop):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dropped = self.dropped_recurrent_kernel()
        with _swapped_attribute(self.cell, "recurrent_kernel", dropped):
            return super().inner_loop(sequences, initial_state, mask, training=training)

    def get_config(self):
        config = super().get_config()
        config["weight_drop"] = self.weight_drop
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class WeightDropLSTM(WeightDropMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` with weight drop on its recurrent kernel (cuDNN-eligible)."""


@keras.saving.register_keras_serializable(package="textrnn")
class WeightDropGRU(WeightDropMixin, keras.layers.GRU):
    """`keras.layers.GRU` with weight drop on its recurrent kernel (cuDNN-eligible)."""


@keras.saving.register_keras_serializable(package="textrnn")
class WeightDropSimpleRNN(WeightDropMixin, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` with weight drop on its recurrent kernel."""


# Weights files name layers after their class (see `textrnn.layers.fast_rnn`): under
# Keras's names, a run trained with weight drop loads into the plain layers and back.
WeightDropLSTM.__name__ = "LSTM"
WeightDropGRU.__name__ = "GRU"
WeightDropSimpleRNN.__name__ = "SimpleRNN"
