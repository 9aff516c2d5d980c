"""What the searches add to a model's log-probabilities: n-gram repeat blocking and the GNMT
coverage penalty, in the graph (fixed shapes, no Python loops over tensors: they compile
under XLA with the searches of `textrnn.decoding.search`).

N-gram repeat blocking (`no_repeat_ngram` N, 0 off): a hypothesis never emits a token that
would complete an N-gram it already holds. It needs no loop over N: each hypothesis carries,
for every earlier position p, the length of the common suffix of its tokens before p and all
its tokens (`suffix_match`); the token at p is blocked when that length is >= N - 1. Appending
a token updates all positions at once: match'[p] = match[p - 1] + 1 where the token before p
equals the new token, else 0. Cost per step: O(time) per hypothesis, whatever N.

Coverage penalty (GNMT, Wu et al. 2016, eq. 14) with weight beta >= 0:
    cp = beta * sum over real source tokens i of log(min(max(coverage_i, COVERAGE_FLOOR), 1))
    coverage_i = sum over the hypothesis's target steps j of attention_ij
It is 0 for a source token attended to in total at least once and negative for each one
attended to less, so adding it to a finished hypothesis's score (log P / length penalty)
favours translations that cover the whole source. The floor keeps a token whose attention
underflowed to exactly 0 from making the score -inf.
"""

from __future__ import annotations

import tensorflow as tf

NEGATIVE = -1e9  # "impossible" log-probability (the searches' NEGATIVE)
COVERAGE_FLOOR = 1e-6  # smallest coverage counted: log(1e-6) = -13.8 per source token
_KEEP = 1e9  # a min() update that leaves a log-probability (<= 0) unchanged


def empty_suffix_match(rows: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """The `suffix_match` state before the first token: int32 (rows, width) zeros."""
    return tf.zeros([rows, width], tf.int32)


def update_suffix_match(
    suffix_match: tf.Tensor, history: tf.Tensor, token: tf.Tensor, step: tf.Tensor
) -> tf.Tensor:
    """The state after appending `token` (rows,) at column `step` of `history` (rows, width).

    `suffix_match[p]` (p < step) is the length of the common suffix of the tokens before p
    and the tokens before `step`; `history` holds the tokens before `step` (columns >= step
    are ignored). Returns the same for step + 1.
    """
    rows = tf.shape(history)[0]
    width = tf.shape(history)[1]
    previous_token = tf.concat([tf.fill([rows, 1], -1), history[:, :-1]], axis=1)  # p -> p - 1
    previous_match = tf.concat([tf.zeros([rows, 1], tf.int32), suffix_match[:, :-1]], axis=1)
    extends = tf.logical_and(
        tf.equal(previous_token, token[:, tf.newaxis]), (tf.range(width) <= step)[tf.newaxis]
    )
    return tf.where(extends, previous_match + 1, 0)


def block_repeated_ngrams(
    log_probs: tf.Tensor,
    suffix_match: tf.Tensor,
    history: tf.Tensor,
    step: tf.Tensor,
    ngram: tf.Tensor,
) -> tf.Tensor:
    """`log_probs` (rows, vocab) with every token that would repeat an `ngram`-gram of
    `history` set to `NEGATIVE` (`ngram` <= 0: unchanged, at no cost).

    history: int32 (rows, width), the tokens emitted before `step` in columns [0, step).
    suffix_match: the state kept by `update_suffix_match` for that history.
    """
    ngram = tf.cast(ngram, tf.int32)

    rows, width = tf.shape(history)[0], tf.shape(history)[1]
    blocked = tf.logical_and(
        suffix_match >= ngram - 1, (tf.range(width) < step)[tf.newaxis]
    )  # (rows, width): the token at p would complete an n-gram already there

    def block() -> tf.Tensor:
        indices = tf.stack(
            [tf.repeat(tf.range(rows), width), tf.reshape(history, [-1])], axis=1
        )  # (rows * width, 2): (row, token at p)
        updates = tf.where(tf.reshape(blocked, [-1]), NEGATIVE, _KEEP)
        return tf.tensor_scatter_nd_min(log_probs, indices, tf.cast(updates, log_probs.dtype))

    # Most steps block nothing (the last n - 1 tokens are new): skip the pass over the
    # vocabulary then, the one cost that grows with it.
    anything = tf.logical_and(ngram > 0, tf.reduce_any(blocked))
    return tf.cond(anything, block, lambda: log_probs)


def coverage_penalty(
    coverage: tf.Tensor, memory_mask: tf.Tensor | None, beta: tf.Tensor | float
) -> tf.Tensor:
    """GNMT coverage penalty (module docstring) of summed attention `coverage` (..., memory).

    memory_mask: bool (..., memory) or broadcastable, True on real source tokens (None: all).
    Returns (...,) float32: 0 where beta is 0.
    """
    coverage = tf.cast(coverage, tf.float32)
    terms = tf.math.log(tf.minimum(tf.maximum(coverage, COVERAGE_FLOOR), 1.0))
    if memory_mask is not None:
        terms = tf.where(tf.cast(memory_mask, tf.bool), terms, 0.0)
    return tf.cast(beta, tf.float32) * tf.reduce_sum(terms, axis=-1)
