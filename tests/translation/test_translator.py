"""The in-graph translator: greedy = beam 1, sorted n-best, punctuation, the served beam
bound (the searches themselves: tests/decoding/test_search.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn.decoding import search
from textrnn.translation.config import MAX_BEAM_SIZE
from textrnn.translation.translator import detokenize_punctuation

# ----------------------------------------------------------------------------- translator


def test_translator_beam_one_is_greedy_and_beam_returns_sorted_n_best(untrained_translator):
    translator = untrained_translator.translator
    sources = tf.constant(["the dog runs", "a woman sings", ""])
    ids = untrained_translator.source_tokenizer.encode_padded(sources, 8)
    memory, mask, states = translator.encode(ids)
    decoder = translator.decoder
    processed = decoder.process_memory(memory)

    def step(previous, state):
        return decoder.step(previous, state, memory, processed, mask)

    state = {"states": states, "feed": decoder.initial_feed(memory)}
    limits = tf.constant([6, 6, 6])
    greedy = search.greedy_search(step, state, limits, 2, 3, tf.shape(memory)[1], 0.6)
    beam = search.beam_search(step, state, limits, 1, 2, 3, tf.shape(memory)[1], 0.6)
    width = greedy["ids"].shape[1]
    np.testing.assert_array_equal(beam["ids"][:, 0, :width].numpy(), greedy["ids"].numpy())
    out = translator.translate(sources, 4, 0, 0.6, 1.5)
    scores = out["hypothesis_scores"].numpy()
    assert out["hypotheses"].shape == (3, 4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert out["attention"].shape[0] == 3
    empty = translator.translate(tf.constant([], tf.string), 4, 0, 0.6, 1.5)
    assert empty["translation"].shape == (0,)


def test_detokenize_punctuation():
    out = detokenize_punctuation(tf.constant(["Ein Mann ( mit T - Shirt ) , der läuft ."]))
    assert out.numpy()[0].decode() == "Ein Mann (mit T-Shirt), der läuft."


def test_served_beam_size_is_bounded_in_the_graph(untrained_translator):
    """The export's `translate` signature takes beam_size from requests: a huge one fails
    at once with a message naming the bound, instead of decoding for minutes."""
    from textrnn.serving.errors import first_line

    translator = untrained_translator.translator
    for beam, message in ((MAX_BEAM_SIZE + 1, "beam_size must be <= 64"), (0, ">= 1")):
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            translator.translate(tf.constant(["the dog runs"]), beam, 0, 0.6, 1.5)
        assert message in first_line(raised.value)  # what the server answers with its 400
