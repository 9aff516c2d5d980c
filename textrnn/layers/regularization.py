"""Activation regularization (AR) and temporal activation regularization (TAR).

Merity et al. (2017): penalize large activations of the last recurrent layer
(AR, on its dropped outputs) and large changes between consecutive steps (TAR,
on its outputs before dropout). With `h` the outputs `(batch, time, units)`
and means taken over every element of the real (unmasked) steps:

    AR  = alpha * mean(h_dropped_t ** 2)
    TAR = beta  * mean((h_t - h_{t-1}) ** 2)       (pairs of consecutive real steps)

Both are added to the training loss (`add_loss`) and only while training:
validation losses and perplexities stay the plain cross-entropy.
"""

from __future__ import annotations

import keras
from keras import ops


def _masked_mean(values, weights):
    """Mean of `values` (batch, time, units) over the steps where `weights` (batch, time) is 1."""
    units = ops.cast(ops.shape(values)[-1], values.dtype)
    total = ops.sum(values * ops.expand_dims(weights, -1))
    return total / ops.maximum(ops.sum(weights) * units, 1.0)


def activation_penalty(dropped, mask=None):
    """mean(h_t ** 2) over the real steps of `dropped` (batch, time, units)."""
    weights = ops.ones(ops.shape(dropped)[:2], dropped.dtype) if mask is None else mask
    return _masked_mean(ops.square(dropped), ops.cast(weights, dropped.dtype))


def temporal_penalty(outputs, mask=None):
    """mean((h_t - h_{t-1}) ** 2) over pairs of consecutive real steps of `outputs`."""
    differences = ops.square(outputs[:, 1:] - outputs[:, :-1])
    if mask is None:
        weights = ops.ones(ops.shape(differences)[:2], outputs.dtype)
    else:
        mask = ops.cast(mask, outputs.dtype)
        weights = mask[:, 1:] * mask[:, :-1]
    return _masked_mean(differences, weights)


@keras.saving.register_keras_serializable(package="textrnn")
class ActivationRegularizer(keras.layers.Layer):
    """Adds `alpha * AR + beta * TAR` to the loss while training; returns the dropped outputs.

    Args:
        alpha: AR weight (0: off).
        beta: TAR weight (0: off).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[outputs, dropped]`, the last recurrent layer's outputs
            before and after dropout, `(batch, time, units)` each.
        mask: the sequence mask, `(batch, time)`, if any.

    Example:

    >>> h = keras.ops.ones((2, 5, 4))
    >>> ActivationRegularizer(2.0, 1.0)([h, h], training=True).shape
    (2, 5, 4)
    """

    def __init__(self, alpha: float = 0.0, beta: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
        self.alpha = alpha
        self.beta = beta
        self.supports_masking = True

    def call(self, inputs, mask=None, training=None):
        outputs, dropped = inputs
        sequence_mask = None if mask is None else mask[1] if mask[1] is not None else mask[0]
        if training:
            penalty = ops.zeros((), "float32")
            if self.alpha:
                ar = activation_penalty(ops.cast(dropped, "float32"), sequence_mask)
                penalty = penalty + self.alpha * ar
            if self.beta:
                tar = temporal_penalty(ops.cast(outputs, "float32"), sequence_mask)
                penalty = penalty + self.beta * tar
            self.add_loss(penalty)
        return dropped

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[1]

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta})
        return config
