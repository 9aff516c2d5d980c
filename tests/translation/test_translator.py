"""The in-graph translator: greedy = beam 1, sorted n-best, punctuation, the served beam
bound (the searches themselves: tests/decoding/test_search.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn.decoding import search
from textrnn.translation.config import MAX_BEAM_SIZE, MAX_COVERAGE_PENALTY, MAX_NO_REPEAT_NGRAM
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


def test_served_repeat_and_coverage_options_are_bounded_in_the_graph(untrained_translator):
    """no_repeat_ngram and coverage_penalty come from requests too: negative, too large or
    non-finite values fail at once, naming the input (the server's 400)."""
    from textrnn.serving.errors import first_line

    translator = untrained_translator.translator
    for ngram, beta, message in (
        (-1, 0.0, "no_repeat_ngram must be >= 0"),
        (MAX_NO_REPEAT_NGRAM + 1, 0.0, f"no_repeat_ngram must be <= {MAX_NO_REPEAT_NGRAM}"),
        (0, -0.5, "coverage_penalty must be a finite number"),
        (0, float("nan"), "coverage_penalty must be a finite number"),
        (0, float("inf"), "coverage_penalty must be a finite number"),
        (0, MAX_COVERAGE_PENALTY * 2, "coverage_penalty must be a finite number"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            translator.translate(tf.constant(["the dog runs"]), 2, 0, 0.6, 1.5, ngram, beta)
        assert message in first_line(raised.value)


def test_translator_blocks_repeated_ngrams_of_a_looping_model(untrained_translator):
    """The untrained model loops; with no_repeat_ngram N no output holds an N-gram twice."""
    translator = untrained_translator.translator
    sources = tf.constant(["the dog runs", "a woman sings", "the child eats", "a cat"])

    def outputs(beam, ngram):
        out = translator.translate(sources, beam, 12, 0.0, 1.5, ngram, 0.0)
        return [
            list(tokens[: length - 1])  # without EOS
            for tokens, length in zip(
                out["target_tokens"].numpy(), out["target_lengths"].numpy(), strict=True
            )
        ]

    def repeats(tokens, n):
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return len(grams) != len(set(grams))

    for beam in (1, 3):
        assert any(repeats(tokens, 2) for tokens in outputs(beam, 0))
        for n in (1, 2):
            assert not any(repeats(tokens, n) for tokens in outputs(beam, n)), (beam, n)


def test_translator_scores_add_the_coverage_penalty(untrained_translator):
    """Greedy: the same output, its score lowered by exactly the penalty of its attention."""
    translator = untrained_translator.translator
    sources = tf.constant(["the dog runs", "a woman sings"])
    plain = translator.translate(sources, 1, 0, 0.6, 1.5, 0, 0.0)
    beta = 0.5
    covered = translator.translate(sources, 1, 0, 0.6, 1.5, 0, beta)
    np.testing.assert_array_equal(covered["translation"].numpy(), plain["translation"].numpy())
    real = covered["source_tokens"].numpy() != b"[PAD]"  # (batch, source_time)
    coverage = covered["attention"].numpy().sum(axis=1)  # (batch, source_time)
    terms = np.log(np.minimum(np.maximum(coverage, 1e-6), 1.0)) * real
    np.testing.assert_allclose(
        covered["score"].numpy() - plain["score"].numpy(), beta * terms.sum(-1), rtol=1e-4
    )
