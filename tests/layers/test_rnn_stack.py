"""RNNStack: shapes, masking, states, residuals, serialization, cuDNN eligibility."""

from __future__ import annotations

import itertools
import logging

import keras
import numpy as np
import pytest

from textrnn.layers.pooling import MaskedPooling
from textrnn.layers.rnn_stack import RNNStack, warn_if_cudnn_disabled

BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4
COMBINATIONS = list(itertools.product(("lstm", "gru", "rnn"), (False, True), (1, 2)))


def _ids(combination) -> str:
    cell, bidirectional, layers = combination
    return f"{cell}-{'bi' if bidirectional else 'uni'}-{layers}"


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(batch, time, features) inputs and a mask: row 0 full, row 1 has 3 real steps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    mask = np.array([[True] * TIME, [True, True, True, False, False]])
    return x, mask


def _states_per_layer(cell: str, bidirectional: bool) -> int:
    return (2 if cell == "lstm" else 1) * (2 if bidirectional else 1)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.mark.parametrize("combination", COMBINATIONS, ids=_ids)
def test_shapes_masking_and_config_round_trip(combination):
    cell, bidirectional, layers = combination
    features = UNITS * (2 if bidirectional else 1)
    x, mask = _inputs()

    sequences = RNNStack(cell=cell, num_layers=layers, units=UNITS, bidirectional=bidirectional)
    out = keras.ops.convert_to_numpy(sequences(x, mask=mask))
    assert out.shape == (BATCH, TIME, features)
    assert sequences.output_features == features
    assert sequences.compute_output_shape((BATCH, TIME, FEATURES)) == (BATCH, TIME, features)

    final = RNNStack(
        cell=cell,
        num_layers=layers,
        units=UNITS,
        bidirectional=bidirectional,
        return_sequences=False,
    )
    last = keras.ops.convert_to_numpy(final(x, mask=mask))
    assert last.shape == (BATCH, features)

    # Padded steps do not matter: garbage there changes nothing at real steps ...
    noisy = x.copy()
    noisy[1, 3:] = 1000.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(final(noisy, mask=mask)), last, atol=1e-6)
    noisy_out = keras.ops.convert_to_numpy(sequences(noisy, mask=mask))
    np.testing.assert_allclose(noisy_out[1, :3], out[1, :3], atol=1e-6)
    np.testing.assert_allclose(noisy_out[0], out[0], atol=1e-6)
    # ... and a padded row equals the same row run unpadded.
    alone = keras.ops.convert_to_numpy(final(x[1:, :3]))
    np.testing.assert_allclose(last[1], alone[0], atol=1e-5)

    # get_config / from_config round trip: same config, same outputs with the same weights.
    config = final.get_config()
    for key, value in dict(
        cell=cell,
        num_layers=layers,
        units=UNITS,
        bidirectional=bidirectional,
        return_sequences=False,
        return_state=False,
    ).items():
        assert config[key] == value
    clone = RNNStack.from_config(config)
    clone(x, mask=mask)
    clone.set_weights(final.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x, mask=mask)), last, atol=1e-6)


@pytest.mark.parametrize("combination", COMBINATIONS, ids=_ids)
def test_return_state_and_initial_state(combination):
    cell, bidirectional, layers = combination
    x, mask = _inputs()
    stack = RNNStack(
        cell=cell,
        num_layers=layers,
        units=UNITS,
        bidirectional=bidirectional,
        return_sequences=False,
        return_state=True,
    )
    outputs = stack(x, mask=mask)
    count = _states_per_layer(cell, bidirectional) * layers
    assert len(outputs) == 1 + count
    for state in outputs[1:]:
        assert tuple(state.shape) == (BATCH, UNITS)
    shapes = stack.compute_output_shape((BATCH, TIME, FEATURES))
    assert len(shapes) == 1 + count

    zeros = [np.zeros((BATCH, UNITS), "float32") for _ in range(count)]
    with_zeros = stack(x, mask=mask, initial_state=zeros)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(with_zeros[0]), keras.ops.convert_to_numpy(outputs[0]), atol=1e-6
    )
    ones = [np.ones((BATCH, UNITS), "float32") for _ in range(count)]
    with_ones = stack(x, mask=mask, initial_state=ones)
    assert not np.allclose(
        keras.ops.convert_to_numpy(with_ones[0]), keras.ops.convert_to_numpy(outputs[0])
    )

    with pytest.raises(ValueError, match="initial_state needs"):
        stack(x, initial_state=zeros[:-1] if count > 1 else zeros + zeros)


def test_residual_adds_the_layer_input_from_the_second_layer_on():
    x, mask = _inputs()
    stack = RNNStack(
        cell="gru", num_layers=2, units=FEATURES, residual=True
    )  # same width as the input
    out = keras.ops.convert_to_numpy(stack(x, mask=mask))
    first = stack.recurrent_layers[0](x, mask=mask)[0]
    second = stack.recurrent_layers[1](first, mask=mask)[0]
    expected = keras.ops.convert_to_numpy(second + first)
    np.testing.assert_allclose(out, expected, atol=1e-6)

    plain = RNNStack(cell="gru", num_layers=2, units=FEATURES, residual=False)
    plain(x, mask=mask)
    plain.set_weights(stack.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(plain(x, mask=mask)), out)


def test_defaults_stay_cudnn_eligible():
    stack = RNNStack(cell="lstm", num_layers=2, units=UNITS, dropout=0.2)
    stack(np.zeros((BATCH, TIME, FEATURES), "float32"))
    for layer in stack.recurrent_layers:
        assert layer.activation.__name__ == "tanh"
        assert layer.recurrent_activation.__name__ == "sigmoid"
        assert layer.recurrent_dropout == 0 and not layer.unroll
    gru = RNNStack(cell="gru", units=UNITS)
    gru(np.zeros((BATCH, TIME, FEATURES), "float32"))
    assert gru.recurrent_layers[0].reset_after


@pytest.mark.parametrize(
    "bad", [dict(cell="transformer"), dict(num_layers=0), dict(units=0), dict(dropout=1.0)]
)
def test_bad_arguments_are_rejected(bad):
    with pytest.raises(ValueError):
        RNNStack(**bad)


def test_model_with_embedding_mask_saves_and_loads(tmp_path):
    ids = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(10, FEATURES, mask_zero=True)(ids)
    x = RNNStack(cell="lstm", num_layers=2, units=UNITS, bidirectional=True, residual=True)(x)
    x = MaskedPooling("mean")(x)
    model = keras.Model(ids, keras.layers.Dense(2)(x))
    batch = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], "int32")
    expected = keras.ops.convert_to_numpy(model(batch))
    # Trailing padding does not change the result (the mask flows through every layer).
    longer = np.pad(batch, [[0, 0], [0, 3]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(longer)), expected, atol=1e-5)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(batch)), expected, atol=1e-6)


def test_cudnn_disabling_configuration_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="textrnn.layers.rnn_stack"):
        warn_if_cudnn_disabled(keras.layers.LSTM(4))
        warn_if_cudnn_disabled(keras.layers.GRU(4))
        RNNStack(cell="lstm", units=4, implementation="keras")(np.zeros((2, 3, 5), "float32"))
    assert not caplog.records  # the defaults keep cuDNN eligible
    with caplog.at_level(logging.WARNING, logger="textrnn.layers.rnn_stack"):
        warn_if_cudnn_disabled(keras.layers.LSTM(4, recurrent_dropout=0.1))
        warn_if_cudnn_disabled(keras.layers.GRU(4, activation="relu"))
        warn_if_cudnn_disabled(keras.layers.LSTM(4, unroll=True))
    text = caplog.text
    assert "recurrent_dropout=0.1" in text and "activation=relu" in text and "unroll=True" in text
    assert text.count("disables the cuDNN kernel") == 3
