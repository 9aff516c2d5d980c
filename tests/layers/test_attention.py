"""Attention layers (Bahdanau additive, Luong dot / general): masking, one step, config."""

from __future__ import annotations

import numpy as np
import pytest

from textrnn.layers.attention import make_attention


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_over_unmasked_and_zero_on_padding(kind):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(3, 4, 6)).astype("float32")
    value = rng.normal(size=(3, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    layer = make_attention(kind, units=8)
    context, weights = layer(query, value, value_mask=mask)
    weights = np.asarray(weights)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[0][:, 3:] == 0.0)
    assert np.all(weights[2] == 0.0)  # nothing to attend to: no weight anywhere
    step_context, step_weights = layer(query[:, 0], value, value_mask=mask)  # one decoding step
    np.testing.assert_allclose(np.asarray(step_weights), weights[:, 0], atol=1e-6)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
