"""Attention over an encoder's memory: Bahdanau (additive) and Luong (dot, general).

Each layer masks padded memory positions, normalises scores with a softmax and
returns the context vector with the weights, for one decoder step or for all
steps at once. `make_attention(kind)` maps a recipe's `model.attention` to a layer.
"""

from __future__ import annotations

import keras
from keras import ops


class _Attention(keras.layers.Layer):
    """Shared masking, softmax and context computation of the attention layers.

    Call arguments:
        query: `(batch, query_time, query_features)` or one step `(batch, query_features)`.
        value: the memory, `(batch, value_time, value_features)` (encoder outputs).
        value_mask: optional boolean `(batch, value_time)`; False marks padding,
            which gets weight exactly 0.
        processed_value: optional `process_value(value)`, computed once per
            sentence when a decoder attends step by step.

    Returns:
        `[context, weights]`: context `(batch, [query_time,] value_features)`,
        weights `(batch, [query_time,] value_time)`, summing to 1 over the
        unmasked positions (all zeros for a row with no unmasked position).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the memory's padding comes in as `value_mask`

    def compute_mask(self, query, value=None, value_mask=None, processed_value=None, mask=None):
        return None

    def process_value(self, value):
        """Per-sentence precomputation over the memory (identity unless overridden)."""
        return value

    def score(self, query, processed_value):  # (batch, tq, tv)
        raise NotImplementedError

    def call(self, query, value, value_mask=None, processed_value=None):
        single = len(query.shape) == 2
        if single:
            query = ops.expand_dims(query, 1)  # (batch, 1, query_features)
        if processed_value is None:
            processed_value = self.process_value(value)
        scores = self.score(query, processed_value)  # (batch, tq, tv)
        if value_mask is not None:
            keep = ops.expand_dims(ops.cast(value_mask, "bool"), 1)  # (batch, 1, tv)
            very_negative = ops.cast(-1e4 if scores.dtype == "float16" else -1e9, scores.dtype)
            scores = ops.where(keep, scores, very_negative)
        weights = ops.softmax(scores, axis=-1)  # (batch, tq, tv)
        if value_mask is not None:
            weights = weights * ops.cast(keep, weights.dtype)  # exact zeros on padding
        context = ops.matmul(weights, ops.cast(value, weights.dtype))  # (batch, tq, value_features)
        if single:
            return [ops.squeeze(context, 1), ops.squeeze(weights, 1)]
        return [context, weights]

    def compute_output_shape(
        self, query_shape, value_shape, value_mask_shape=None, processed_value_shape=None
    ):
        prefix = tuple(query_shape[:-1])
        return [prefix + (value_shape[-1],), prefix + (value_shape[1],)]


@keras.saving.register_keras_serializable(package="textrnn")
class DotAttention(_Attention):
    """Luong et al. (2015) `dot` attention: score(q, v) = q . v.

    Query and value features must be equal.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> context, weights = DotAttention()(keras.ops.ones((2, 3, 8)), keras.ops.ones((2, 5, 8)))
    >>> context.shape, weights.shape
    ((2, 3, 8), (2, 3, 5))
    """

    def build(
        self, query_shape, value_shape=None, value_mask_shape=None, processed_value_shape=None
    ):
        if value_shape is not None and query_shape[-1] != value_shape[-1]:
            raise ValueError(
                "dot attention needs equal query and value features, "
                f"got {query_shape[-1]} and {value_shape[-1]}"
            )
        self.built = True

    def score(self, query, processed_value):
        return ops.matmul(query, ops.transpose(processed_value, (0, 2, 1)))  # (batch, tq, tv)


@keras.saving.register_keras_serializable(package="textrnn")
class GeneralAttention(_Attention):
    """Luong et al. (2015) `general` attention: score(q, v) = q W . v.

    The query is projected to the value size (cheaper than projecting every
    memory position when decoding step by step).

    Args:
        use_bias: add a bias to the query projection.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> context, weights = GeneralAttention()(keras.ops.ones((2, 4)), keras.ops.ones((2, 5, 6)))
    >>> context.shape, weights.shape
    ((2, 6), (2, 5))
    """

    def __init__(self, use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.use_bias = use_bias

    def build(
        self, query_shape, value_shape=None, value_mask_shape=None, processed_value_shape=None
    ):
        features = (value_shape or processed_value_shape)[-1]
        self.query_projection = keras.layers.Dense(
            features, use_bias=self.use_bias, name="query_projection"
        )
        self.query_projection.build(tuple(query_shape))
        self.built = True

    def score(self, query, processed_value):
        projected = self.query_projection(query)  # (batch, tq, value_features)
        return ops.matmul(projected, ops.transpose(processed_value, (0, 2, 1)))  # (batch, tq, tv)

    def get_config(self):
        config = super().get_config()
        config.update({"use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class AdditiveAttention(_Attention):
    """Bahdanau et al. (2015) additive attention: score(q, v) = w . tanh(W_q q + W_v v).

    `process_value` computes `W_v v` once per sentence.

    Args:
        units: hidden size of the scoring network.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> attention = AdditiveAttention(units=8)
    >>> context, weights = attention(keras.ops.ones((2, 3, 4)), keras.ops.ones((2, 5, 6)))
    >>> context.shape, weights.shape
    ((2, 3, 6), (2, 3, 5))
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.units = units

    def build(
        self, query_shape, value_shape=None, value_mask_shape=None, processed_value_shape=None
    ):
        self.query_projection = keras.layers.Dense(
            self.units, use_bias=False, name="query_projection"
        )
        self.query_projection.build(tuple(query_shape))
        self.value_projection = keras.layers.Dense(
            self.units, use_bias=True, name="value_projection"
        )
        if value_shape is not None:
            self.value_projection.build(tuple(value_shape))
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), initializer="glorot_uniform"
        )
        self.built = True

    def process_value(self, value):
        return self.value_projection(value)  # (batch, tv, units)

    def score(self, query, processed_value):
        projected = self.query_projection(query)  # (batch, tq, units)
        hidden = ops.tanh(
            ops.expand_dims(projected, 2) + ops.expand_dims(processed_value, 1)
        )  # (batch, tq, tv, units)
        return ops.sum(
            hidden * ops.cast(self.score_vector, hidden.dtype), axis=-1
        )  # (batch, tq, tv)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


ATTENTIONS = {"additive": AdditiveAttention, "dot": DotAttention, "general": GeneralAttention}


def make_attention(kind: str, units: int = 128, **kwargs) -> _Attention:
    """The attention layer for `kind` ("additive", "dot" or "general")."""
    if kind not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {kind!r}")
    if kind == "additive":
        return AdditiveAttention(units=units, **kwargs)
    return ATTENTIONS[kind](**kwargs)
