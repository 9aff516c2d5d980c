"""textrnn.decoding.sampling: deterministic by construction, seeded, range-checked, XLA-ready."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn.decoding import sampling
from textrnn.errors import ConfigError, UserError

VOCABULARY = 10


def random_logits(seed: int, batch: int = 4) -> tf.Tensor:
    return tf.constant(
        np.random.default_rng(seed).normal(size=(batch, VOCABULARY)).astype(np.float32)
    )


def draw(logits, temperature=1.0, top_k=0, top_p=1.0, seed=0, step=0) -> np.ndarray:
    return sampling.sample_logits(
        logits, temperature, top_k, top_p, sampling.step_seed(seed, step)
    ).numpy()


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (3, 1.0), (0, 0.5), (5, 0.9)])
def test_one_hot_logits_force_the_token(top_k: int, top_p: float) -> None:
    forced = np.array([3, 0, 9, 5])
    logits = tf.one_hot(forced, VOCABULARY) * 1e9
    for seed in range(5):
        np.testing.assert_array_equal(draw(logits, 1.0, top_k, top_p, seed=seed), forced)


@pytest.mark.parametrize("temperature", [0.0, 1.0, 1e10, 1e30])
def test_banned_tokens_are_never_drawn_at_any_temperature(temperature: float) -> None:
    banned = tf.constant(np.arange(VOCABULARY) < 4)  # like [PAD] [UNK] [BOS] [EOS]
    logits = tf.constant(np.tile(np.linspace(5.0, -5.0, VOCABULARY, dtype=np.float32), (64, 1)))
    drawn = np.concatenate(
        [
            sampling.sample_logits(
                logits, temperature, 0, 1.0, sampling.step_seed(seed, 0), banned=banned
            ).numpy()
            for seed in range(20)
        ]
    )
    assert drawn.min() >= 4  # the best logits are banned: a mask before scaling would draw them
    if temperature >= 1e10:  # all but flat: every allowed token comes up
        assert set(drawn) == set(range(4, VOCABULARY))


def test_temperature_zero_is_argmax() -> None:
    for seed in range(5):
        logits = random_logits(seed)
        np.testing.assert_array_equal(draw(logits, 0.0, seed=seed), np.argmax(logits, axis=-1))


def test_top_k_one_is_greedy() -> None:
    for seed in range(5):
        logits = random_logits(seed)
        np.testing.assert_array_equal(
            draw(logits, 1.5, top_k=1, seed=seed), np.argmax(logits, axis=-1)
        )


def test_tiny_top_p_is_greedy() -> None:
    for seed in range(5):
        logits = random_logits(seed)
        np.testing.assert_array_equal(
            draw(logits, 1.5, top_p=1e-6, seed=seed), np.argmax(logits, axis=-1)
        )


def test_same_seed_same_tokens_and_seeds_differ() -> None:
    logits = tf.zeros([64, VOCABULARY])
    first = draw(logits, seed=11, step=3)
    np.testing.assert_array_equal(first, draw(logits, seed=11, step=3))
    assert not np.array_equal(first, draw(logits, seed=12, step=3))
    assert not np.array_equal(first, draw(logits, seed=11, step=4))
    assert len(set(first.tolist())) > 3  # uniform logits really sample


def test_top_k_filter_keeps_k() -> None:
    logits = random_logits(0)
    kept = sampling.top_k_filter(logits, 3).numpy() > -1e8
    np.testing.assert_array_equal(kept.sum(axis=-1), [3, 3, 3, 3])
    assert (sampling.top_k_filter(logits, 0).numpy() == logits.numpy()).all()


def test_top_p_filter_keeps_the_nucleus() -> None:
    logits = tf.math.log(tf.constant([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda p: (sampling.top_p_filter(logits, p).numpy() > -1e8).astype(int).tolist()  # noqa: E731
    assert kept(0.5) == [[1, 0, 0, 0]]
    assert kept(0.6) == [[1, 1, 0, 0]]
    assert kept(0.81) == [[1, 1, 1, 0]]
    assert kept(1.0) == [[1, 1, 1, 1]]


def test_sampling_follows_the_distribution() -> None:
    probabilities = np.array([0.6, 0.3, 0.1], np.float32)
    logits = tf.math.log(tf.constant(np.tile(probabilities, (4000, 1))))
    counts = np.bincount(draw(logits, seed=5), minlength=3) / 4000
    np.testing.assert_allclose(counts, probabilities, atol=0.03)


def test_xla_matches_eager() -> None:
    logits = random_logits(3, batch=8)
    compiled = tf.function(sampling.sample_logits, jit_compile=True)
    for seed in range(3):
        eager = draw(logits, 0.9, 4, 0.9, seed=seed, step=2)
        xla = compiled(logits, 0.9, 4, 0.9, sampling.step_seed(seed, 2)).numpy()
        np.testing.assert_array_equal(eager, xla)


@pytest.mark.parametrize(
    "arguments, option",
    [
        ({"temperature": -0.1}, "--temperature"),
        ({"temperature": float("inf")}, "--temperature"),
        ({"temperature": float("nan")}, "--temperature"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": -1}, "--top-k"),
        ({"top_k": VOCABULARY + 1}, "--top-k"),
        ({"max_tokens": sampling.MAX_TOKENS_CAP + 1}, "--max-tokens"),
        ({"max_tokens": -1}, "--max-tokens"),
    ],
)
def test_bad_options_name_the_option(arguments: dict, option: str) -> None:
    values = {"max_tokens": 10, "temperature": 1.0, "top_k": 0, "top_p": 1.0, **arguments}
    with pytest.raises(ConfigError, match=option) as caught:
        sampling.validate_sampling_options(vocabulary_size=VOCABULARY, **values)
    assert isinstance(caught.value, UserError)
    assert "\n" not in str(caught.value)


def test_good_options_pass() -> None:
    sampling.validate_sampling_options(0, 0.0, VOCABULARY, 1.0, VOCABULARY)
    sampling.validate_sampling_options(sampling.MAX_TOKENS_CAP, 2.0, 0, 1e-9, VOCABULARY)


def test_hash_uniform_is_uniform_and_row_addressable() -> None:
    values = sampling.hash_uniform(tf.constant([200, 500]), sampling.step_seed(3, 1)).numpy()
    assert 0.0 < values.min() and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.std() - 12**-0.5) < 0.01
    row = sampling.hash_uniform(
        tf.constant([1, 500]), sampling.step_seed(3, 1), first_row=17
    ).numpy()
    np.testing.assert_array_equal(row[0], values[17])
    other = sampling.hash_uniform(tf.constant([200, 500]), sampling.step_seed(-3, 1)).numpy()
    assert np.corrcoef(values.ravel(), other.ravel())[0, 1] < 0.05
