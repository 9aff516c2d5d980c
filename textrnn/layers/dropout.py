"""Dropout layers of the shared stack: token (word) dropout on the ids, locked (variational)
dropout on sequences, embedding dropout that drops whole words."""

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


@keras.saving.register_keras_serializable(package="textrnn")
class LockedDropout(keras.layers.Layer):
    """Locked (variational) dropout: one mask per sequence, the same at every time step.

    Gal & Ghahramani (2016), as AWD-LSTM uses it on the inputs, between the
    recurrent layers and on the outputs: a unit dropped in a sequence stays
    dropped for the whole sequence, which regularizes a recurrent network
    better than fresh noise at every step.

    Args:
        rate: probability of dropping each feature of a sequence.
        seed: seed of the masks.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, time, features)`; the mask is drawn as `(batch, 1, features)`.
        training: drop only while training; at inference the layer is the identity.

    Example:

    >>> LockedDropout(0.5)(keras.ops.ones((2, 5, 4)), training=True).shape
    (2, 5, 4)
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        shape = ops.shape(inputs)
        noise = keras.random.uniform((shape[0], 1, shape[2]), seed=self.seed_generator)
        keep = 1.0 - self.rate
        return inputs * ops.cast(noise < keep, inputs.dtype) / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class EmbeddingDropout(keras.layers.Layer):
    """Embedding dropout that drops whole words (AWD-LSTM's `dropoute`).

    Per batch, each row of the embedding matrix (each word of the
    vocabulary) is dropped with probability `rate` and the kept rows are
    scaled by `1 / (1 - rate)`; a dropped word is zero everywhere it occurs in
    the batch. Computed on the embedded tokens (each token's vector times its
    word's mask entry), which is the same as looking the ids up in the dropped
    matrix without building it.

    Args:
        rate: probability of dropping each word of the vocabulary.
        vocabulary_size: rows of the embedding matrix.
        seed: seed of the masks.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[token_ids (batch, time), embedded (batch, time, width)]`.
        training: drop only while training; at inference the layer returns `embedded`.

    Example:

    >>> ids = keras.ops.array([[3, 3, 5]])
    >>> EmbeddingDropout(0.5, 8)([ids, keras.ops.ones((1, 3, 4))], training=True).shape
    (1, 3, 4)
    """

    def __init__(
        self, rate: float = 0.0, vocabulary_size: int = 1, seed: int | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.vocabulary_size = vocabulary_size
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def word_scales(self, dtype="float32"):
        """One draw: `(vocabulary_size,)` of 0 (dropped word) or 1 / (1 - rate)."""
        keep = 1.0 - self.rate
        noise = keras.random.uniform((self.vocabulary_size,), seed=self.seed_generator)
        return ops.cast(noise < keep, dtype) / ops.cast(keep, dtype)

    def call(self, inputs, training=None):
        token_ids, embedded = inputs
        if not training or self.rate == 0.0:
            return embedded
        scales = ops.take(self.word_scales(embedded.dtype), token_ids)  # (batch, time)
        return embedded * ops.expand_dims(scales, -1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[1]

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"rate": self.rate, "vocabulary_size": self.vocabulary_size, "seed": self.seed}
        )
        return config
