"""The fused attention-decoder loop (`layers.fast_rnn_decoder`) against the reference step
loop of `translation.decoder.AttentionDecoder`: outputs and every gradient, each cell and
attention kind, in float64 (exact up to rounding) and float32 (to 1e-5)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from textrnn.layers import fast_rnn_decoder, fast_rnn_kernels
from textrnn.translation.decoder import AttentionDecoder

BATCH, STEPS, SOURCE, UNITS, EMBEDDING, FEED = 3, 5, 6, 12, 8, 7


@pytest.fixture(autouse=True)
def restore_floatx():
    """The float64 tests build every sublayer in float64 through Keras's default."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def _decoder(cell, attention, dtype, query_bias=False):
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    memory_features = UNITS if attention == "dot" else 10
    decoder = AttentionDecoder(
        vocabulary_size=20,
        embedding_dim=EMBEDDING,
        cell=cell,
        units=UNITS,
        attention=attention,
        attention_units=9,
        attentional_dim=FEED,
        implementation="fast",
        dtype=dtype,
    )
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(1, 20, (BATCH, STEPS)), tf.int32)
    memory = tf.constant(rng.normal(size=(BATCH, SOURCE, memory_features)), dtype)
    mask = np.ones((BATCH, SOURCE), bool)
    mask[1, 4:] = False  # padded source positions
    mask[2, 2:] = False
    states = [
        tf.constant(rng.normal(size=(BATCH, UNITS)), dtype)
        for _ in range(2 if cell == "lstm" else 1)
    ]
    if query_bias:
        decoder.attention_layer.use_bias = True
    decoder(ids, memory, tf.constant(mask), states)
    return decoder, ids, memory, tf.constant(mask), states


def _outputs_and_gradients(decoder, loop, ids, memory, mask, states):
    rng = np.random.default_rng(1)
    dtype = memory.dtype
    embedded = decoder.embedding(ids)
    d_outputs = tf.constant(rng.normal(size=(BATCH, STEPS, FEED)), dtype)
    d_weights = tf.constant(rng.normal(size=(BATCH, STEPS, SOURCE)), dtype)
    with tf.GradientTape() as tape:
        tape.watch([embedded, memory, *states])
        processed = decoder.process_memory(memory)
        attentional, weights = getattr(decoder, loop)(
            embedded, memory, processed, mask, states, True
        )
        loss = tf.reduce_sum(attentional * d_outputs) + tf.reduce_sum(weights * d_weights)
    # The embedding and output layers are outside the loop (no gradient here).
    sources = [embedded, memory, *states, *decoder.stack.trainable_variables]
    sources += [*decoder.attention_layer.trainable_variables, decoder.attentional.kernel]
    gradients = tape.gradient(loss, sources)
    return [attentional, weights], [tf.convert_to_tensor(g) for g in gradients]


@pytest.mark.parametrize(
    "cell, attention, query_bias",
    [
        ("gru", "additive", False),
        ("gru", "dot", False),
        ("gru", "general", True),
        ("lstm", "additive", False),
        ("lstm", "dot", False),
        ("lstm", "general", False),
    ],
)
def test_fused_loop_matches_step_loop_in_float64(cell, attention, query_bias):
    decoder, *inputs = _decoder(cell, attention, "float64", query_bias)
    assert decoder.fast_loop_applies(True) and not decoder.fast_loop_applies(False)
    expected, expected_grads = _outputs_and_gradients(decoder, "_step_loop", *inputs)
    actual, actual_grads = _outputs_and_gradients(decoder, "_fused_loop", *inputs)
    for want, got in zip(expected + expected_grads, actual + actual_grads, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-11)


def test_fused_loop_matches_step_loop_in_float32():
    decoder, *inputs = _decoder("gru", "additive", "float32")
    expected, expected_grads = _outputs_and_gradients(decoder, "_step_loop", *inputs)
    actual, actual_grads = _outputs_and_gradients(decoder, "_fused_loop", *inputs)
    for want, got in zip(expected + expected_grads, actual + actual_grads, strict=True):
        scale = np.abs(want.numpy()).max()
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5 * scale)


@pytest.mark.parametrize("cell, attention", [("gru", "additive"), ("lstm", "general")])
def test_fused_loop_in_bfloat16_is_as_close_to_float32_as_the_step_loop(
    monkeypatch, cell, attention
):
    """Under `mixed_bfloat16` the fused loop runs (without XLA: oneDNN's bfloat16 products) and
    its error against float32 stays within 4x the reference step loop's in bfloat16 (measured:
    1-2.7x; exactness is the float64 test's job)."""
    reference, ids, memory, mask, states = _decoder(cell, attention, "float32")
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = AttentionDecoder.from_config({**reference.get_config(), "dtype": "mixed_bfloat16"})
    mixed(ids, memory, mask, states)
    mixed.set_weights(reference.get_weights())
    assert mixed.compute_dtype == "bfloat16" and mixed.fast_loop_applies(True)
    monkeypatch.setattr(fast_rnn_kernels, "_compiled", {})
    low = [tf.cast(t, tf.bfloat16) for t in (memory, *states)]
    results = [
        _outputs_and_gradients(reference, "_step_loop", ids, memory, mask, states),
        _outputs_and_gradients(mixed, "_step_loop", ids, low[0], mask, low[1:]),
        _outputs_and_gradients(mixed, "_fused_loop", ids, low[0], mask, low[1:]),
    ]
    flat = [[tf.cast(t, tf.float32).numpy() for part in result for t in part] for result in results]
    for want, step_bfloat16, fused_bfloat16 in zip(*flat, strict=True):
        step_error = np.abs(step_bfloat16 - want).max()
        assert 0 < np.abs(fused_bfloat16 - want).max() <= 4 * step_error + 1e-3
    loops = fast_rnn_kernels._compiled
    assert {key[0] for key in loops} == {"decoder_fwd", "decoder_bwd"}
    assert not any(key[-1] for key in loops)  # (name, spec, xla)


def test_dropout_mask_and_its_gradient_match_automatic_differentiation():
    """With a dropout mask on the attentional vector: the hand-written backward against
    TensorFlow's gradient of the same steps (`decoder_step`) in a Python loop."""
    decoder, ids, memory, mask, states = _decoder("lstm", "additive", "float64")
    spec = decoder.fused_spec(dropout=True)
    weights, embedding_kernel, input_bias = decoder.fused_weights()
    rng = np.random.default_rng(2)
    dropout = tf.constant((rng.random((STEPS, BATCH, FEED)) > 0.3) / 0.7, tf.float64)
    x = tf.einsum("bte,eg->tbg", decoder.embedding(ids), embedding_kernel) + input_bias
    keys = decoder.process_memory(memory)
    feed = tf.zeros((BATCH, FEED), tf.float64)
    sources = [x, memory, keys, *weights]

    def reference():
        step_states, step_feed, outputs = list(states), feed, []
        for t in range(STEPS):
            attentional, _, step_states = fast_rnn_decoder.decoder_step(
                spec, x[t], step_feed, step_states, memory, keys, mask, weights
            )
            step_feed = attentional * dropout[t]
            outputs.append(step_feed)
        return tf.stack(outputs)

    def fused():
        return fast_rnn_decoder.attention_decoder_sequence(
            spec, x, states, feed, memory, keys, mask, dropout, weights
        )[0]

    results = []
    for run in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(sources)
            outputs = run()
            loss = tf.reduce_sum(outputs * tf.sin(outputs))
        results.append([outputs, *tape.gradient(loss, sources)])
    for want, got in zip(*results, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-11)


def test_fused_decoding_step_matches_keras_cells():
    """`AttentionDecoder.step` (fused) gives the log-probabilities of `step_embedded`."""
    decoder, ids, memory, mask, states = _decoder("gru", "general", "float32")
    assert decoder.fused_step_applies()
    processed = decoder.process_memory(memory)
    state = {"states": states, "feed": decoder.initial_feed(memory)}
    log_probs, new_state, weights = decoder.step(ids[:, 0], state, memory, processed, mask)
    embedded = keras.ops.take(decoder.embedding.embeddings, ids[:, 0], axis=0)
    attentional, want_weights, want_states = decoder.step_embedded(
        embedded, state["feed"], states, memory, processed, mask
    )
    want = tf.nn.log_softmax(decoder.logits(attentional))
    np.testing.assert_allclose(log_probs.numpy(), want.numpy(), atol=1e-5)
    np.testing.assert_allclose(weights.numpy(), want_weights.numpy(), atol=1e-6)
    np.testing.assert_allclose(new_state["states"][0].numpy(), want_states[0].numpy(), atol=1e-6)
