"""Fast CPU LSTM / GRU: same numbers, same weights, same behaviour as Keras's layers."""

from __future__ import annotations

import itertools
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from textrnn.layers import fast_rnn_kernels
from textrnn.layers.fast_rnn import FastGRU, FastLSTM
from textrnn.layers.rnn_stack import RNNStack, resolve_implementation, warn_if_cudnn_disabled

BATCH, TIME, FEATURES, UNITS = 3, 6, 5, 4
PAIRS = {"lstm": (keras.layers.LSTM, FastLSTM), "gru": (keras.layers.GRU, FastGRU)}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    mask = np.ones((BATCH, TIME), bool)
    mask[1, 4:] = False  # right padding
    mask[2, :2] = False  # left padding and a hole: any mask must match Keras
    mask[2, 4] = False
    return x, mask


def _random_weights(layer, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))


def _outputs_and_gradients(layer, x, mask, initial_state):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        tape.watch(initial_state)
        # training=True: the fast loop runs only in training (no dropout here, so
        # Keras's reference computes the same function).
        result = layer(x, mask=mask, initial_state=initial_state, training=True)
        result = result if isinstance(result, (list, tuple)) else [result]
        weights = np.linspace(-1.0, 1.0, result[0].shape[-1]).astype("float32")
        loss = tf.reduce_sum(result[0] * weights) + sum(tf.reduce_sum(s * s) for s in result[1:])
    gradients = tape.gradient(loss, [x] + list(initial_state) + layer.trainable_weights)
    return [r.numpy() for r in result], [g.numpy() for g in gradients]


def _assert_close(expected, actual, tolerance=1e-5):
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_allclose(a, e, atol=tolerance, rtol=tolerance)


def _assert_matches_keras(cell, settings, masked, zero_output, data_seed=0, state_seed=2):
    """Keras's layer and the fast one, same weights and initial states: same outputs, gradients."""
    keras_class, fast_class = PAIRS[cell]
    x, mask = _data(data_seed)
    reference, fast = keras_class(units=UNITS, **settings), fast_class(units=UNITS, **settings)
    reference.build(x.shape)
    fast.build(x.shape)
    _random_weights(reference)
    fast.set_weights(reference.get_weights())
    reference.zero_output_for_mask = fast.zero_output_for_mask = zero_output
    rng = np.random.default_rng(state_seed)
    initial = [
        tf.constant(rng.normal(size=(BATCH, UNITS)).astype("float32"))
        for _ in range(2 if cell == "lstm" else 1)
    ]
    expected = _outputs_and_gradients(reference, x, mask if masked else None, initial)
    actual = _outputs_and_gradients(fast, x, mask if masked else None, initial)
    _assert_close(expected[0], actual[0])
    _assert_close(expected[1], actual[1])


CASES = [
    (cell, go_backwards, masked, zero_output)
    for cell, go_backwards, masked, zero_output in itertools.product(
        ("lstm", "gru"), *[(False, True)] * 3
    )
    if masked or not zero_output
]


@pytest.mark.parametrize("cell, go_backwards, masked, zero_output", CASES)
def test_layer_matches_keras(cell, go_backwards, masked, zero_output):
    return_sequences = (
        not go_backwards or zero_output
    )  # both kinds of output, with and without masks
    settings = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards)
    _assert_matches_keras(cell, settings, masked, zero_output)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "go_backwards, masked, zero_output",
    [(False, False, False), (True, True, False), (False, True, True)],
)
def test_batch_halves_match_keras(monkeypatch, cell, go_backwards, masked, zero_output):
    """Wide layers: two concurrent half-batch loops (uneven here: 2 + 1 rows), LSTM per gate."""
    monkeypatch.setattr(fast_rnn_kernels, "_MIN_HALF_ROWS", 1)
    monkeypatch.setattr(fast_rnn_kernels, "_MIN_WIDE_UNITS", UNITS)
    assert fast_rnn_kernels._wide(UNITS) and not fast_rnn_kernels._wide(UNITS - 1)
    settings = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    _assert_matches_keras(cell, settings, masked, zero_output, 9, 10)


@pytest.mark.parametrize(
    "go_backwards, masked, zero_output",
    [(False, False, False), (True, True, False), (False, True, True)],
)
def test_wide_lstm_plain_loops_match_keras(monkeypatch, go_backwards, masked, zero_output):
    """Wide LSTM layers too large for the halves run the per-gate loops without XLA."""
    monkeypatch.setattr(fast_rnn_kernels, "_MIN_WIDE_UNITS", UNITS)
    monkeypatch.setattr(fast_rnn_kernels, "_MAX_HALVES_KERNEL_BYTES", 0)
    monkeypatch.setattr(fast_rnn_kernels, "_compiled", {})
    settings = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    _assert_matches_keras("lstm", settings, masked, zero_output, 11, 12)
    loops = fast_rnn_kernels._compiled
    assert {key[0] for key in loops} == {"lstm_fwd", "lstm_bwd"}
    assert not any(key[-1] for key in loops)  # (name, ..., xla)
    assert all(key[3] for key in loops)  # per gate


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("wide", [False, True])
def test_bfloat16_loops_match_keras_to_bfloat16_precision(monkeypatch, cell, wide):
    """Under `mixed_bfloat16` the fast loops run (without XLA) and stay as close to float32 as
    Keras's own bfloat16 layer: each output's and gradient's largest error within 3x Keras's
    (measured: 0.4-2x; a wrong gate or term is off by the values' scale, 100x more)."""
    if wide:  # per-gate LSTM layout, two half-batch loops
        monkeypatch.setattr(fast_rnn_kernels, "_MIN_WIDE_UNITS", UNITS)
        monkeypatch.setattr(fast_rnn_kernels, "_MIN_HALF_ROWS", 1)
    monkeypatch.setattr(fast_rnn_kernels, "_compiled", {})
    keras_class, fast_class = PAIRS[cell]
    x, mask = _data(13)
    settings = dict(units=UNITS, return_sequences=True, return_state=True)
    layers = {
        "float32": keras_class(**settings),
        "keras_bfloat16": keras_class(dtype="mixed_bfloat16", **settings),
        "fast_bfloat16": fast_class(dtype="mixed_bfloat16", **settings),
    }
    for layer in layers.values():
        layer.build(x.shape)
    _random_weights(layers["float32"])
    for layer in layers.values():
        layer.set_weights(layers["float32"].get_weights())
    fast = layers["fast_bfloat16"]
    assert fast.compute_dtype == "bfloat16" and fast.fast_path_supported(training=True)
    rng = np.random.default_rng(14)
    initial = [
        tf.constant(rng.normal(size=(BATCH, UNITS)).astype("float32"))
        for _ in range(2 if cell == "lstm" else 1)
    ]
    results = {
        name: [
            np.asarray(v, np.float32)
            for part in _outputs_and_gradients(layer, x, mask, initial)
            for v in part
        ]
        for name, layer in layers.items()
    }
    for want, keras_bf16, got in zip(*results.values(), strict=True):
        keras_error = np.abs(keras_bf16 - want).max()
        assert 0 < np.abs(got - want).max() <= 3 * keras_error + 1e-3  # bfloat16, not float32
    loops = fast_rnn_kernels._compiled
    assert {key[0] for key in loops} == {f"{cell}_fwd", f"{cell}_bwd"}
    assert not any(key[-1] for key in loops)  # (name, ..., xla): oneDNN's bfloat16 products


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, BATCH, 20])
def test_unknown_batch_size_matches_keras(monkeypatch, cell, batch):
    """A batch of unknown size when traced is split in halves at run time (batch 1: one half
    is empty; batch 20: the halves run concurrently in the graph)."""
    monkeypatch.setattr(fast_rnn_kernels, "_MIN_WIDE_UNITS", UNITS)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(batch, TIME, FEATURES)).astype("float32")
    keras_class, fast_class = PAIRS[cell]
    reference = keras_class(UNITS, return_sequences=True)
    fast = fast_class(UNITS, return_sequences=True)
    reference.build(x.shape)
    fast.build(x.shape)
    _random_weights(reference)
    fast.set_weights(reference.get_weights())
    spec = [tf.TensorSpec((None, TIME, FEATURES), tf.float32)]
    results = []
    for layer in (reference, fast):

        @tf.function(input_signature=spec)
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * np.linspace(-1, 1, UNITS))
            return [loss] + tape.gradient(loss, [x] + layer.trainable_weights)

        results.append([r.numpy() for r in step(tf.constant(x))])
    _assert_close(*results)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stack_matches_keras_bidirectional_states_and_swaps_weights(cell, tmp_path):
    x, mask = _data(3)
    settings = dict(cell=cell, num_layers=2, units=UNITS, bidirectional=True, return_state=True)
    reference = RNNStack(implementation="keras", **settings)
    fast = RNNStack(implementation="fast", **settings)
    reference.build(x.shape)
    fast.build(x.shape)
    assert isinstance(fast.recurrent_layers[0].forward_layer, PAIRS[cell][1])
    assert [w.path.split("/", 1)[1] for w in fast.weights] == [
        w.path.split("/", 1)[1] for w in reference.weights
    ]
    _random_weights(reference)
    fast.set_weights(reference.get_weights())
    rng = np.random.default_rng(4)
    initial = [
        tf.constant(rng.normal(size=(BATCH, UNITS)).astype("float32"))
        for _ in range(fast.states_per_layer * 2)
    ]
    expected = _outputs_and_gradients(reference, x, mask, initial)
    actual = _outputs_and_gradients(fast, x, mask, initial)
    _assert_close(expected[0], actual[0])
    _assert_close(expected[1], actual[1])

    # Checkpoints swap both ways through a model's weights file.
    def model(implementation):
        inputs = keras.Input((TIME, FEATURES))
        outputs = RNNStack(implementation=implementation, name="stack", **settings)(inputs)
        return keras.Model(inputs, outputs)

    keras_model, fast_model = model("keras"), model("fast")
    keras_model.get_layer("stack").set_weights(reference.get_weights())
    keras_model.save_weights(tmp_path / "keras.weights.h5")
    fast_model.load_weights(tmp_path / "keras.weights.h5")
    _assert_close(
        [o.numpy() for o in keras_model(x)], [o.numpy() for o in fast_model(x, training=True)]
    )
    fast_model.save_weights(tmp_path / "fast.weights.h5")
    model("keras").load_weights(tmp_path / "fast.weights.h5")


def _stack_model(implementation, **settings):
    inputs = keras.Input((TIME, FEATURES))
    outputs = RNNStack(implementation=implementation, name="stack", **settings)(inputs)
    return keras.Model(inputs, outputs)


def _same_weights(a, b):
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unidirectional_stack_weights_files_swap_with_keras(cell, tmp_path):
    """A model trained with Keras's layers (a GPU) loads with the fast ones (a CPU) and back."""
    settings = dict(cell=cell, num_layers=2, units=UNITS, bidirectional=False)
    keras_model, fast_model = _stack_model("keras", **settings), _stack_model("fast", **settings)
    _random_weights(keras_model.get_layer("stack"))
    keras_model.save_weights(tmp_path / "keras.weights.h5")
    fast_model.load_weights(tmp_path / "keras.weights.h5")
    _same_weights(keras_model, fast_model)
    _random_weights(fast_model.get_layer("stack"), seed=2)
    fast_model.save_weights(tmp_path / "fast.weights.h5")
    keras_model.load_weights(tmp_path / "fast.weights.h5")
    _same_weights(keras_model, fast_model)


def test_step_by_step_in_while_loop_matches_full_sequence():
    """Decoders call the stack one step at a time with initial_state / return_state."""
    x, _ = _data(6)
    stack = RNNStack(
        cell="lstm", num_layers=2, units=UNITS, return_state=True, implementation="fast"
    )
    full = stack(x, training=True)  # the fast loop vs step-by-step cell calls

    @tf.function
    def loop(x):
        states = [tf.zeros((BATCH, UNITS))] * 4
        outputs = tf.TensorArray(tf.float32, size=TIME)

        def body(t, outputs, *states):
            result = stack(x[:, t : t + 1], initial_state=list(states))
            return (t + 1, outputs.write(t, result[0][:, 0]), *result[1:])

        _, outputs, *states = tf.while_loop(lambda t, *_: t < TIME, body, (0, outputs, *states))
        return tf.transpose(outputs.stack(), (1, 0, 2)), states

    outputs, states = loop(tf.constant(x))
    _assert_close(
        [full[0].numpy()] + [s.numpy() for s in full[1:]],
        [outputs.numpy()] + [s.numpy() for s in states],
    )


@pytest.mark.slow
def test_trains_under_distribution_strategy_and_exports(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inputs = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
        x = RNNStack(cell="gru", num_layers=2, units=UNITS, implementation="fast")(x)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens = np.random.default_rng(7).integers(1, 10, size=(8, 6)).astype("int32")
    tokens[:, 4:] = 0
    data = tf.data.Dataset.from_tensor_slices((tokens, tokens)).batch(4)
    history = model.fit(data, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, None), tf.int32)]
    )
    tf.saved_model.save(module, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    np.testing.assert_allclose(
        loaded.serve(tf.constant(tokens)).numpy(), model(tokens).numpy(), atol=1e-5
    )


def test_implementation_choice_config_and_fallbacks(caplog):
    assert resolve_implementation("keras", "lstm") == "keras"
    assert resolve_implementation("fast", "rnn") == "keras"
    expected = "keras" if tf.config.list_logical_devices("GPU") else "fast"
    assert resolve_implementation("auto", "gru") == expected
    with pytest.raises(ValueError, match="implementation"):
        RNNStack(implementation="cudnn")
    stack = RNNStack(cell="gru", units=UNITS, implementation="fast")
    assert RNNStack.from_config(stack.get_config()).implementation == "fast"

    # A configuration the fast loop does not cover falls back to Keras's loop, same numbers.
    x, mask = _data(8)
    reference = keras.layers.LSTM(UNITS, activation="relu", return_sequences=True)
    fast = FastLSTM(UNITS, activation="relu", return_sequences=True)
    reference.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(reference.get_weights())
    assert not fast.fast_path_supported(training=True)
    np.testing.assert_allclose(
        fast(x, mask=mask, training=True).numpy(), reference(x, mask=mask).numpy(), atol=1e-6
    )
    # Inference never takes the per-shape-compiled fast loop.
    supported = FastLSTM(UNITS)
    supported.build(x.shape)
    assert supported.fast_path_supported(training=True)
    assert not supported.fast_path_supported(training=False)

    with caplog.at_level(logging.WARNING, logger="textrnn.layers.rnn_stack"):
        warn_if_cudnn_disabled(keras.layers.GRU(UNITS, recurrent_dropout=0.1, name="slow_gru"))
    assert "slow_gru: recurrent_dropout=0.1 disables the cuDNN kernel" in caplog.text
