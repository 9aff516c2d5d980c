"""Greedy and beam search (textrnn.decoding.search) on a synthetic bigram step: beam 1 is
greedy, sorted length-penalized n-best, length caps (XLA compilation, with the
repeat and coverage options on: test_penalties.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textrnn.decoding import search

from .steps import toy_step


def test_beam_one_equals_greedy():
    for seed in range(4):
        step, _ = toy_step(seed=seed)
        state = {"t": tf.zeros([4, 1])}
        limits = tf.constant([6, 8, 3, 10])
        greedy = search.greedy_search(step, state, limits, 2, 3, 3, length_penalty=0.6)
        beam = search.beam_search(step, state, limits, 1, 2, 3, 3, length_penalty=0.6)
        width = greedy["ids"].shape[1]
        np.testing.assert_array_equal(beam["ids"][:, 0, :width].numpy(), greedy["ids"].numpy())
        np.testing.assert_allclose(beam["score"][:, 0].numpy(), greedy["score"].numpy(), rtol=1e-5)
        np.testing.assert_array_equal(beam["lengths"][:, 0].numpy(), greedy["lengths"].numpy())


def test_beam_hypotheses_sorted_by_length_penalized_score():
    step, table = toy_step(seed=11)
    alpha = 0.8
    result = search.beam_search(
        step, {"t": tf.zeros([2, 1])}, tf.constant([7, 9]), 4, 2, 3, 3, alpha
    )
    scores, ids, lengths = result["score"].numpy(), result["ids"].numpy(), result["lengths"].numpy()
    table = table.numpy()
    for row in range(2):
        assert np.all(np.diff(scores[row]) <= 1e-6), scores[row]
        finished = scores[row] > search.NEGATIVE / 2  # unused slots when the search stops early
        assert finished[0]
        for k in np.flatnonzero(finished):
            length = lengths[row, k]
            tokens = [2, *ids[row, k, :length]]
            assert tokens[-1] == 3  # every finished hypothesis ends in EOS
            log_prob = sum(table[a, b] for a, b in zip(tokens[:-1], tokens[1:], strict=False))
            expected = log_prob / ((5.0 + length) / 6.0) ** alpha
            np.testing.assert_allclose(scores[row, k], expected, rtol=1e-4)


def test_output_is_capped_relative_to_source_length():
    vocabulary = 6
    never_eos = tf.one_hot(4, vocabulary, on_value=0.0, off_value=-20.0)  # always prefers token 4

    def step(ids, state):
        return (
            tf.tile(never_eos[tf.newaxis], [tf.shape(ids)[0], 1]),
            state,
            tf.zeros([tf.shape(ids)[0], 2]),
        )

    limits = tf.constant([2, 5])
    greedy = search.greedy_search(step, {"s": tf.zeros([2, 1])}, limits, 2, 3, 2)
    beam = search.beam_search(step, {"s": tf.zeros([2, 1])}, limits, 3, 2, 3, 2)
    np.testing.assert_array_equal(greedy["lengths"].numpy(), [2, 5])
    np.testing.assert_array_equal(beam["lengths"][:, 0].numpy(), [2, 5])
    assert greedy["ids"].numpy()[0].tolist()[:2] == [4, 3]  # forced EOS at the cap
