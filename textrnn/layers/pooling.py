"""Pooling over time that respects the mask: a sequence classifier's many-to-one step."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textrnn")
class MaskedPooling(keras.layers.Layer):
    """Max or mean over time that ignores padded steps.

    Args:
        mode: "max" or "mean".
        **kwargs: standard `keras.layers.Layer` arguments.

    A row whose steps are all padding (an empty text) pools to zeros.

    Example:

    >>> MaskedPooling("mean")(keras.ops.ones((2, 3, 4))).shape
    (2, 4)
    """

    def __init__(self, mode: str = "max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)  # (batch, time, 1)
        if self.mode == "mean":
            total = ops.sum(inputs * weights, axis=1)
            count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1.0, inputs.dtype))
            return total / count
        very_negative = ops.cast(-1e4 if inputs.dtype == "float16" else -1e9, inputs.dtype)
        masked = ops.where(ops.cast(weights, "bool"), inputs, very_negative)
        pooled = ops.max(masked, axis=1)
        any_step = ops.cast(ops.sum(weights, axis=1) > 0, inputs.dtype)  # (batch, 1)
        return pooled * any_step

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
