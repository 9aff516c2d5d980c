"""Embeddings that also read features back out as vocabulary logits (tied input/output)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="textrnn")
class ReversibleEmbedding(keras.layers.Embedding):
    """An embedding that also maps features back to vocabulary logits (tied weights).

    Tying the output projection to the embedding matrix (Press & Wolf, 2017)
    saves `vocabulary x width` parameters and usually lowers perplexity.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding width.
        tied: also build the output bias used by `reverse=True` calls.
        **kwargs: `keras.layers.Embedding` arguments (e.g. `mask_zero=True`).

    Call arguments:
        inputs: token ids `(batch, time)`, or features `(..., output_dim)` with `reverse=True`.
        reverse: return `inputs @ embeddings^T + bias` (float32 logits).

    Example:

    >>> layer = ReversibleEmbedding(10, 4, tied=True)
    >>> layer(layer(keras.ops.ones((2, 3), "int32")), reverse=True).shape
    (2, 3, 10)
    """

    def __init__(self, input_dim: int, output_dim: int, tied: bool = False, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        self.tied = tied

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.tied:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.input_dim,), initializer="zeros"
            )

    def get_config(self):
        config = super().get_config()
        config.update({"tied": self.tied})
        return config

    # Embedding saves only its matrix; save and load every variable (matrix, output bias).
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def call(self, inputs, reverse: bool = False):
        if not reverse:
            return super().call(inputs)
        kernel = keras.ops.cast(self.embeddings, inputs.dtype)
        logits = keras.ops.matmul(inputs, keras.ops.transpose(kernel))  # (..., vocabulary)
        return keras.ops.cast(logits, "float32") + self.output_bias

    def compute_mask(self, inputs, mask=None):
        if "float" in str(getattr(inputs, "dtype", "")):
            return mask  # reverse call: keep the sequence mask
        return super().compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape, reverse: bool = False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse: bool = False):
        shape = self.compute_output_shape(inputs.shape, reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)
