"""The fast LSTM / GRU loops: when batch halves pay, exact float64 gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn.layers import fast_rnn_kernels
from textrnn.layers.fast_rnn_kernels import gru_sequence, lstm_sequence


@pytest.mark.parametrize(
    "units, gates, dtype, halves",
    [
        (64, 4, tf.float32, False),  # narrow: one loop
        (256, 4, tf.float32, True),  # 1 MB recurrent kernel
        (256, 4, tf.float64, True),  # 2 MB
        (418, 3, tf.float32, True),  # GRU, 2 MB
        (512, 4, tf.float32, False),  # 4 MB: both halves would stream it every step
        (650, 3, tf.float32, False),
    ],
)
def test_batch_halves_only_for_wide_layers_with_a_cache_sized_kernel(units, gates, dtype, halves):
    assert fast_rnn_kernels._halves_pay(tf.zeros((units, gates * units), dtype)) is halves


@pytest.mark.parametrize(
    "units, xla",
    [
        (64, True),  # narrow: fused layout, compiled
        (256, True),  # halves pay: compiled
        (384, False),  # 2.4 MB: one per-gate loop, faster as TensorFlow's own loop
        (650, False),
    ],
)
def test_lstm_loops_compile_with_xla_unless_wide_and_one_loop(units, xla):
    assert fast_rnn_kernels._loops_use_xla("lstm", tf.zeros((units, 4 * units))) is xla


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("units", [64, 256, 650])
def test_gru_loops_compile_with_xla_and_bfloat16_loops_never(cell, gates, units):
    """bfloat16 products need oneDNN's kernels (XLA's CPU backend does not use AMX)."""
    kernel = tf.zeros((units, gates * units), tf.bfloat16)
    assert fast_rnn_kernels._loops_use_xla(cell, kernel) is False
    if cell == "gru":
        assert fast_rnn_kernels._loops_use_xla(cell, tf.cast(kernel, tf.float32)) is True


@pytest.mark.parametrize("cell, wide", [("lstm", False), ("lstm", True), ("gru", False)])
def test_finite_difference_gradient_float64(monkeypatch, cell, wide):
    if wide:  # the per-gate LSTM layout
        monkeypatch.setattr(fast_rnn_kernels, "_MIN_WIDE_UNITS", 1)
    rng = np.random.default_rng(5)
    steps, batch, features, units = 4, 2, 3, 3
    gates = 4 if cell == "lstm" else 3
    mask = tf.constant(
        np.array([[True, True], [True, True], [True, False], [False, False]])
    )  # (T, B)
    arguments = [
        rng.normal(size=(steps, batch, features)),
        rng.normal(size=(batch, units)),
        *([rng.normal(size=(batch, units))] if cell == "lstm" else []),
        rng.normal(scale=0.5, size=(features, gates * units)),
        rng.normal(scale=0.5, size=(units, gates * units)),
        rng.normal(scale=0.5, size=(gates * units,) if cell == "lstm" else (2, gates * units)),
    ]
    arguments = [tf.constant(a, tf.float64) for a in arguments]
    probe = tf.constant(rng.normal(size=(steps, batch, units)), tf.float64)

    def loss(*a):
        if cell == "lstm":
            outputs, h, c = lstm_sequence(a[0], a[1], a[2], mask, *a[3:])
            return tf.reduce_sum(outputs * probe) + tf.reduce_sum(h * c)
        outputs, h = gru_sequence(a[0], a[1], mask, *a[2:])
        return tf.reduce_sum(outputs * probe) + tf.reduce_sum(h * h)

    theoretical, numerical = tf.test.compute_gradient(loss, arguments, delta=1e-6)
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, atol=1e-6, rtol=1e-6)
