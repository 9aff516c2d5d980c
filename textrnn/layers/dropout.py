"""Token-level (word) dropout: regularisation on the ids, before the embedding."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textrnn")
class TokenDropout(keras.layers.Layer):
    """Replace token ids with the unknown id at `rate` during training (word dropout).

    Args:
        rate: probability of replacing each non-padding token.
        unknown_id: the id that replaces dropped tokens.
        **kwargs: standard `keras.layers.Layer` arguments.

    Padding (id 0) is never touched, so masks are unchanged. At inference the
    layer is the identity.

    Example:

    >>> TokenDropout(0.1, unknown_id=1)(keras.ops.array([[5, 6, 0]]), training=False)
    """

    def __init__(self, rate: float = 0.1, unknown_id: int = 1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.unknown_id = unknown_id
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        noise = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
        drop = ops.logical_and(noise < self.rate, ops.not_equal(inputs, 0))
        return ops.where(drop, ops.cast(self.unknown_id, inputs.dtype), inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "unknown_id": self.unknown_id, "seed": self.seed})
        return config
