"""N-gram repeat blocking and the GNMT coverage penalty (textrnn.decoding.penalties) inside
greedy and beam search: blocking really blocks (and equals a plain Python greedy search that
blocks), the coverage penalty changes scores exactly as its formula says, both under XLA."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textrnn.decoding import penalties, search

from .steps import attending_step, toy_step

BOS, EOS = 1, 2


def repeated_ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of `tokens` that occur more than once."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return sorted({g for g in grams if grams.count(g) > 1})


def outputs(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """Each hypothesis's tokens without its final EOS (rows of any leading shape)."""
    flat_ids = ids.reshape(-1, ids.shape[-1])
    return [
        list(row[: max(n - 1, 0)]) for row, n in zip(flat_ids, lengths.reshape(-1), strict=True)
    ]


def python_greedy(table: np.ndarray, limit: int, ngram: int) -> list[int]:
    """Greedy decoding of a bigram table with the blocking rule written the obvious way."""
    tokens: list[int] = []
    previous = BOS
    while True:
        scores = table[previous].copy()
        if len(tokens) + 1 >= limit:  # the cap: only EOS
            scores[np.arange(len(scores)) != EOS] = -np.inf
        if ngram:
            prefix = tuple(tokens[len(tokens) - ngram + 1 :]) if ngram > 1 else ()
            for i in range(len(tokens) - ngram + 1):
                if tuple(tokens[i : i + ngram - 1]) == prefix:
                    scores[tokens[i + ngram - 1]] = -np.inf
        token = int(np.argmax(scores))
        if token == EOS:
            return tokens
        tokens.append(token)
        previous = token


def test_blocking_leaves_no_repeated_ngram_in_any_output():
    limits = tf.constant([30, 24, 17, 30])
    looping = 0
    for seed in range(3):
        step, _ = toy_step(vocabulary=9, seed=seed)
        state = {"t": tf.zeros([4, 1])}
        plain = search.greedy_search(step, state, limits, BOS, EOS, 3)
        looping += sum(
            bool(repeated_ngrams(o, 3))
            for o in outputs(plain["ids"].numpy(), plain["lengths"].numpy())
        )
        for n in (1, 2, 3):
            greedy = search.greedy_search(step, state, limits, BOS, EOS, 3, no_repeat_ngram=n)
            beam = search.beam_search(
                step, state, limits, 4, BOS, EOS, 3, 0.6, no_repeat_ngram=tf.constant(n)
            )
            finished = beam["score"].numpy() > search.NEGATIVE / 2
            hypotheses = outputs(greedy["ids"].numpy(), greedy["lengths"].numpy()) + [
                o
                for o, kept in zip(
                    outputs(beam["ids"].numpy(), beam["lengths"].numpy()),
                    finished.reshape(-1),
                    strict=True,
                )
                if kept
            ]
            for tokens in hypotheses:
                assert not repeated_ngrams(tokens, n), (seed, n, tokens)
    assert looping  # without blocking, these bigram tables do repeat trigrams


def test_in_graph_blocking_equals_the_plain_python_rule():
    for seed in range(3):
        step, table = toy_step(vocabulary=8, seed=seed)
        limits = [25, 12]
        for n in (1, 2, 3):
            greedy = search.greedy_search(
                step, {"t": tf.zeros([2, 1])}, tf.constant(limits), BOS, EOS, 3, no_repeat_ngram=n
            )
            got = outputs(greedy["ids"].numpy(), greedy["lengths"].numpy())
            for row, limit in enumerate(limits):
                assert got[row] == python_greedy(table.numpy(), limit, n)[: limit - 1], (seed, n)


def test_coverage_penalty_adds_exactly_its_formula_to_scores():
    step, _ = attending_step(seed=4)
    memory_mask = tf.constant([[True, True, True, False], [True, True, False, False]])
    limits = tf.constant([9, 7])
    alpha, beta = 0.6, 0.7
    state = {"t": tf.zeros([2, 1])}
    plain_greedy = search.greedy_search(step, state, limits, BOS, EOS, 4, alpha)
    plain_beam = search.beam_search(step, state, limits, 3, BOS, EOS, 4, alpha)
    greedy = search.greedy_search(
        step, state, limits, BOS, EOS, 4, alpha, coverage_penalty=beta, memory_mask=memory_mask
    )
    beam = search.beam_search(
        step, state, limits, 3, BOS, EOS, 4, alpha, coverage_penalty=beta, memory_mask=memory_mask
    )
    mask = memory_mask.numpy()
    for result, attention, plain in (
        (greedy, greedy["attention"].numpy()[:, np.newaxis], plain_greedy),
        (beam, beam["attention"].numpy(), plain_beam),
    ):
        score = result["score"].numpy().reshape(2, -1)
        log_prob = result["log_prob"].numpy().reshape(2, -1)
        lengths = result["lengths"].numpy().reshape(2, -1)
        coverage = attention.sum(axis=2)  # (batch, k, memory)
        terms = np.log(np.minimum(np.maximum(coverage, penalties.COVERAGE_FLOOR), 1.0))
        expected_penalty = beta * (terms * mask[:, np.newaxis]).sum(-1)
        expected = log_prob / ((5.0 + lengths) / 6.0) ** alpha + expected_penalty
        finished = score > search.NEGATIVE / 2
        np.testing.assert_allclose(score[finished], expected[finished], rtol=1e-5, atol=1e-5)
        assert np.all(expected_penalty[finished] < 0)  # the toy attention leaves gaps
        if result is greedy:  # one hypothesis: the same output, a lower score
            np.testing.assert_array_equal(result["ids"].numpy(), plain["ids"].numpy())
            assert np.all(result["score"].numpy() < plain["score"].numpy())


def test_coverage_penalty_ignores_padding_and_is_zero_when_covered():
    coverage = tf.constant([[1.5, 1.0, 0.0], [0.25, 0.0, 2.0]])
    mask = tf.constant([[True, True, False], [True, True, True]])
    got = penalties.coverage_penalty(coverage, mask, 2.0).numpy()
    np.testing.assert_allclose(got, [0.0, 2.0 * (np.log(0.25) + np.log(1e-6))], rtol=1e-6)
    np.testing.assert_array_equal(penalties.coverage_penalty(coverage, mask, 0.0).numpy(), 0.0)


def test_options_compile_with_xla():
    step, _ = attending_step(seed=2)
    limits = tf.constant([12, 8], tf.int32)
    mask = tf.constant([[True, True, True, True], [True, True, True, False]])
    options = {
        "no_repeat_ngram": tf.constant(2),
        "coverage_penalty": tf.constant(0.4),
        "memory_mask": mask,
    }

    def beam():
        return search.beam_search(
            step,
            {"t": tf.zeros([2, 1])},
            limits,
            3,
            BOS,
            EOS,
            4,
            0.6,
            **options,
            static_shapes=True,
        )

    def greedy():
        return search.greedy_search(
            step,
            {"t": tf.zeros([2, 1])},
            limits,
            BOS,
            EOS,
            4,
            0.6,
            **options,
            static_shapes=True,
        )

    for plain, compiled in [
        (beam(), tf.function(beam, jit_compile=True)()),
        (greedy(), tf.function(greedy, jit_compile=True)()),
    ]:
        np.testing.assert_array_equal(plain["ids"].numpy(), compiled["ids"].numpy())
        np.testing.assert_allclose(plain["score"].numpy(), compiled["score"].numpy(), rtol=1e-5)
