"""BPT3C: a stack read chunk by chunk gives the unchunked stack's numbers, and its gradient
stops before each text's last `bptt_chunks` chunks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn.layers.pooling import MaskedPooling
from textrnn.layers.rnn_stack import RNNStack
from textrnn.sentiment.chunked import ChunkedRNNStack

LENGTHS = np.array([23, 9, 1, 0])  # a full row, a short one, one token, an empty text
TIME, FEATURES, CHUNK = 23, 4, 5


def _inputs() -> tuple[tf.Tensor, tf.Tensor]:
    values = np.random.default_rng(0).normal(size=(len(LENGTHS), TIME, FEATURES))
    mask = np.arange(TIME)[np.newaxis, :] < LENGTHS[:, np.newaxis]
    return tf.constant(values.astype("float32")), tf.constant(mask)


def _pair(pooling: str, bptt_chunks: int = 0, **stack):
    """An unchunked stack + pooling and a chunked one with the same weights."""
    settings = {"cell": "lstm", "num_layers": 2, "units": 6, "residual": True, **stack}
    plain = RNNStack(return_sequences=pooling != "final", **settings)
    chunked = ChunkedRNNStack(CHUNK, bptt_chunks, pooling, **settings)
    inputs, mask = _inputs()
    plain(inputs, mask=mask)
    chunked(inputs, mask=mask)
    chunked.set_weights(plain.get_weights())

    def unchunked(x, training=False):
        y = plain(x, mask=mask, training=training)
        return y if pooling == "final" else MaskedPooling(pooling)(y, mask=mask)

    def read_in_chunks(x, training=False):
        return chunked(x, mask=mask, training=training)

    return (unchunked, plain), (read_in_chunks, chunked)


@pytest.mark.parametrize(("pooling", "cell"), [("final", "lstm"), ("max", "gru"), ("mean", "lstm")])
def test_chunked_reading_gives_the_unchunked_outputs_and_gradients(pooling, cell):
    inputs, _ = _inputs()
    results = []
    for model, layer in _pair(pooling, cell=cell, implementation="keras"):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs)
            loss = tf.reduce_sum(outputs * tf.range(1.0, 7.0))  # weighs every feature
        results.append((outputs, *tape.gradient(loss, [inputs, *layer.trainable_variables])))
    for expected, got in zip(*results, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    assert np.abs(results[1][1].numpy()[0]).sum() > 0  # gradients do reach the inputs


def test_gradients_stop_before_each_text_s_last_chunks():
    _, (chunked, _) = _pair("mean", bptt_chunks=1, implementation="keras")
    inputs, _ = _inputs()
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(chunked(inputs))
    gradient = np.abs(tape.gradient(loss, inputs).numpy()).sum(axis=-1)  # (batch, time)
    # Row 0: 23 tokens in chunks of 5, the last chunk holds tokens 20-22; row 1: 9 tokens,
    # the last chunk 5-8; row 2: its only token. Nothing flows to the tokens before those.
    for row, (first, end) in enumerate([(20, 23), (5, 9), (0, 1)]):
        assert not gradient[row, :first].any(), row
        assert (gradient[row, first:end] > 0).all(), row
        assert not gradient[row, end:].any(), row
    assert not gradient[3].any()


def test_training_path_matches_in_a_compiled_step_and_two_chunks_reach_further():
    """The fast CPU loop (training=True, XLA) inside the chunk loop, under tf.function."""
    (unchunked, _), (chunked, _) = _pair("mean", bptt_chunks=2)
    inputs, _ = _inputs()

    @tf.function
    def gradients(model):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(model(inputs, training=True))
        return tape.gradient(loss, inputs)

    reached = np.abs(gradients(chunked).numpy()).sum(axis=-1)
    assert not reached[0, :15].any() and (reached[0, 15:] > 0).all()  # the last two chunks
    expected = gradients(unchunked).numpy()
    np.testing.assert_allclose(reached[1], np.abs(expected[1]).sum(axis=-1), atol=1e-5)


def test_only_unidirectional_stacks_read_in_chunks():
    with pytest.raises(ValueError, match="unidirectional"):
        ChunkedRNNStack(4, bidirectional=True)


def test_a_chunked_classifier_has_the_layer_groups_gradual_unfreezing_thaws(tmp_path):
    from textrnn import sentiment
    from textrnn.config import TokenizerConfig, load_config
    from textrnn.tokenizers import build_tokenizer
    from textrnn.training.layer_groups import layer_groups

    overrides = {"model.chunk_length": 4, "model.stack.num_layers": 2, "model.stack.units": 4}
    config = load_config(sentiment.Config, None, overrides)
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), ["a good film"], tmp_path)
    model = sentiment.build_model(config, tokenizer, compile=False)
    groups = layer_groups(model)  # embedding, layer 0, layer 1, the head
    assert [len(group) for group in groups] == [1, 3, 3, 2]
