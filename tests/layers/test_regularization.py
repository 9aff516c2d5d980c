"""AWD-LSTM regularizers: weight drop on both paths, locked and embedding dropout, AR / TAR."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from textrnn.layers.dropout import EmbeddingDropout, LockedDropout
from textrnn.layers.fast_rnn import FastGRU, FastLSTM
from textrnn.layers.regularization import ActivationRegularizer
from textrnn.layers.rnn_stack import RNNStack
from textrnn.layers.weight_drop import WeightDropGRU, WeightDropLSTM, WeightDropSimpleRNN

BATCH, TIME, FEATURES, UNITS = 3, 6, 5, 4
# cell -> (plain Keras layer, Keras layer with weight drop, fast layer or None)
CELLS = {
    "lstm": (keras.layers.LSTM, WeightDropLSTM, FastLSTM),
    "gru": (keras.layers.GRU, WeightDropGRU, FastGRU),
    "rnn": (keras.layers.SimpleRNN, WeightDropSimpleRNN, None),
}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    mask = np.ones((BATCH, TIME), bool)
    mask[1, 4:] = False
    return x, mask


def _built(layer_class, seed=None, **kwargs):
    layer = layer_class(UNITS, return_sequences=True, seed=seed, **kwargs)
    layer.build((None, None, FEATURES))
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])
    return layer


def _outputs_and_gradients(layer, x, mask):
    with tf.GradientTape() as tape:
        outputs = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(outputs * np.linspace(-1, 1, UNITS).astype("float32"))
    return outputs.numpy(), [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_same_numbers_on_the_fast_and_keras_paths(cell):
    _, keras_class, fast_class = CELLS[cell]
    x, mask = _data()
    fast = _built(fast_class, seed=5, weight_drop=0.5)
    stock = _built(keras_class, seed=5, weight_drop=0.5)
    assert fast.fast_path_supported(training=True)
    fast_out, fast_grads = _outputs_and_gradients(fast, x, mask)
    stock_out, stock_grads = _outputs_and_gradients(stock, x, mask)
    np.testing.assert_allclose(fast_out, stock_out, atol=1e-5)
    for ours, theirs in zip(fast_grads, stock_grads, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_is_one_kernel_mask_for_the_whole_batch(cell):
    """The layer computes exactly the plain layer whose recurrent kernel is dropped once."""
    plain_class, keras_class, fast_class = CELLS[cell]
    x, mask = _data()
    twin = _built(keras_class, seed=9, weight_drop=0.4)
    dropped = twin.dropped_recurrent_kernel().numpy()  # the first draw of seed 9
    kernel = twin.cell.recurrent_kernel.numpy()
    kept = dropped != 0
    assert 0 < kept.mean() < 1  # some weights of the matrix dropped, some kept
    np.testing.assert_allclose(dropped[kept], kernel[kept] / 0.6, rtol=1e-6)
    reference = _built(plain_class)
    reference.cell.recurrent_kernel.assign(dropped)
    expected = reference(x, mask=mask, training=True).numpy()
    for layer_class in filter(None, (keras_class, fast_class)):
        layer = _built(layer_class, seed=9, weight_drop=0.4)
        np.testing.assert_allclose(layer(x, mask=mask, training=True), expected, atol=1e-5)
        # A new batch draws a new mask; inference uses the kernel as it is.
        assert not np.allclose(layer(x, mask=mask, training=True), expected, atol=1e-3)
        np.testing.assert_allclose(
            layer(x, mask=mask), _built(plain_class)(x, mask=mask), atol=1e-6
        )


def test_weight_drop_stack_keeps_weights_interchangeable(tmp_path):
    x, _ = _data()
    inputs = keras.Input((None, FEATURES))
    dropped = keras.Model(inputs, RNNStack("lstm", 2, UNITS, weight_drop=0.3, name="s")(inputs))
    plain = keras.Model(
        inputs, RNNStack("lstm", 2, UNITS, implementation="keras", name="s")(inputs)
    )
    dropped.save_weights(tmp_path / "a.weights.h5")
    plain.load_weights(tmp_path / "a.weights.h5")
    np.testing.assert_allclose(plain(x), dropped(x), atol=1e-6)


def test_locked_dropout_one_mask_per_sequence_same_at_every_step():
    x = np.ones((4, 7, 16), "float32")
    outputs = LockedDropout(0.5, seed=1)(x, training=True).numpy()
    assert set(np.unique(outputs)) <= {0.0, 2.0}
    np.testing.assert_array_equal(outputs, np.repeat(outputs[:, :1], 7, axis=1))
    assert not np.array_equal(outputs[0, 0], outputs[1, 0])  # each sequence its own mask
    np.testing.assert_array_equal(LockedDropout(0.5)(x, training=False), x)


def test_stack_locked_dropout_between_layers():
    stack = RNNStack("gru", 2, UNITS, dropout=0.5, locked_dropout=True)
    stack.build((None, None, FEATURES))
    assert isinstance(stack.dropout_layers[0], LockedDropout)
    assert type(RNNStack("gru", 2, UNITS, dropout=0.5).dropout_layers[0]) is keras.layers.Dropout


def test_embedding_dropout_drops_whole_words_rescaled():
    ids = np.array([[3, 3, 5, 7, 5], [7, 3, 0, 5, 2]], "int32")
    embedded = np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32") + 3.0
    layer = EmbeddingDropout(0.5, vocabulary_size=10, seed=4)
    twin = EmbeddingDropout(0.5, vocabulary_size=10, seed=4)
    scales = twin.word_scales().numpy()  # the same first draw: one value per word
    assert set(np.unique(scales)) <= {0.0, 2.0}
    outputs = layer([ids, embedded], training=True).numpy()
    np.testing.assert_allclose(outputs, embedded * scales[ids][..., None], rtol=1e-6)
    for word in (3, 5, 7):  # a word is dropped everywhere in the batch, or nowhere
        rows = outputs[ids == word]
        assert np.all(rows == 0) or np.all(rows != 0)
    np.testing.assert_array_equal(layer([ids, embedded], training=False), embedded)


def test_activation_regularizer_adds_the_formulas_to_the_loss():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(2, 5, 3)).astype("float32")
    dropped = rng.normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    layer = ActivationRegularizer(alpha=2.0, beta=0.5)
    assert layer([raw, dropped], mask=[mask, mask], training=True) is not None
    (penalty,) = layer.losses
    ar = (dropped[mask] ** 2).mean()
    pairs = mask[:, 1:] & mask[:, :-1]
    tar = ((raw[:, 1:] - raw[:, :-1])[pairs] ** 2).mean()
    np.testing.assert_allclose(float(penalty), 2.0 * ar + 0.5 * tar, rtol=1e-5)
    layer([raw, dropped], mask=[mask, mask], training=False)
    assert not layer.losses  # nothing outside training
