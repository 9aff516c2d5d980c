"""Greedy and beam search (textrnn.decoding.search) on a synthetic bigram step: beam 1 is
greedy, sorted length-penalized n-best, length caps (XLA compilation, with the
repeat and coverage options on: test_penalties.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textrnn.decoding import search

from .steps import attending_step, toy_step


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
        finished = scores[row] > search.NEGATIVE / 2  # unused slots when the search stops early
        capped = lengths[row][finished] == [7, 9][row]  # cut at the cap: after the others
        assert np.all(np.diff(capped.astype(int)) >= 0), capped
        for group in (scores[row][finished][~capped], scores[row][finished][capped]):
            assert np.all(np.diff(group) <= 1e-6), scores[row]
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


def _eos_shy_table() -> np.ndarray:
    """Bigram log-probabilities (unnormalized; BOS 2, EOS 3): from BOS, token 4 (-0.01) or
    EOS at once (-3); after 4, 4 again (-0.01) or EOS (-5); anything else -20."""
    table = np.full([6, 6], -20.0, np.float32)
    table[2, 4], table[2, 3] = -0.01, -3.0
    table[4, 4], table[4, 3] = -0.01, -5.0
    return table


CAPPED_SCORE = (-0.05 - 5.0) / (11 / 6)  # "4 4 4 4 4 [EOS forced at 6]", alpha 1: -2.75
NATURAL = [[3], [4, 4, 4, 4, 3]]  # what ends by itself, scored -3 and -5.04 / (10 / 6)


def test_a_hypothesis_cut_at_the_cap_ranks_after_every_natural_end():
    # The capped hypothesis scores -2.75, above every natural end; still, what ended by
    # itself comes first (tensor2tensor's rule); with nothing else, the capped one is kept
    # with its true score.
    table = tf.constant(_eos_shy_table())

    def step(ids, state):
        return tf.gather(table, ids), state, tf.zeros([tf.shape(ids)[0], 2])

    for beam, expected, scores in (
        (2, NATURAL, [-3.0, -5.04 / (10 / 6)]),
        (1, [[4] * 5 + [3]], [CAPPED_SCORE]),
    ):
        result = search.beam_search(
            step, {"s": tf.zeros([1, 1])}, tf.constant([6]), beam, 2, 3, 2, 1.0, n_best=beam
        )
        lengths = result["lengths"].numpy()[0]
        found = [result["ids"].numpy()[0, k, : lengths[k]].tolist() for k in range(beam)]
        assert found == expected
        np.testing.assert_allclose(result["score"].numpy()[0], scores, rtol=1e-5)
    assert CAPPED_SCORE > -3.0


def test_the_host_search_ranks_capped_hypotheses_alike():
    from textrnn.edge import search as host_search

    table = _eos_shy_table()
    for beam, expected, scores in (
        (2, NATURAL, [-3.0, -5.04 / (10 / 6)]),
        (1, [[4] * 5 + [3]], [CAPPED_SCORE]),
    ):
        found = host_search.beam_search(
            lambda ids, state: (table[ids], state, np.zeros([len(ids), 2], np.float32)),
            {"s": np.zeros([1, 1], np.float32)},
            max_length=6,
            beam_size=beam,
            bos_id=2,
            eos_id=3,
            alpha=1.0,
            n_best=beam,
        )
        assert found.ids == expected
        np.testing.assert_allclose(found.scores, scores, rtol=1e-5)


def test_beam_attention_is_each_finished_hypothesis_own_history():
    """The weights come back per hypothesis from the steps' records (not copied along):
    column j is what the step attended to after the hypothesis's token j - 1 (BOS first),
    zeros after its end and in unused slots."""
    bos, eos, memory = 2, 3, 4
    step, _ = attending_step(vocabulary=9, memory=memory, seed=7)  # lengths 3-5, unused slots
    state = {"t": tf.zeros([3, 1])}
    limits = tf.constant([7, 4, 9])
    result = search.beam_search(
        step, state, limits, 4, bos, eos, memory, 0.6, no_repeat_ngram=2, coverage_penalty=0.2
    )
    ids, lengths = result["ids"].numpy(), result["lengths"].numpy()
    attention = result["attention"].numpy()
    weights = step(tf.range(9), {"t": tf.zeros([9, 1])})[2].numpy()  # per previous token
    assert attention.shape == ids.shape + (memory,)
    checked = 0
    for row, slot in np.ndindex(*lengths.shape):
        length = lengths[row, slot]
        previous = [bos, *ids[row, slot, : max(length - 1, 0)]]
        expected = np.zeros_like(attention[row, slot])
        expected[:length] = weights[previous][:length]
        np.testing.assert_allclose(attention[row, slot], expected, atol=1e-6)
        checked += length > 1
    assert checked >= 4
