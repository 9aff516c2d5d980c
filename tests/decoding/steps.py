"""Synthetic step functions for the search tests (plain helpers, no model)."""

from __future__ import annotations


def toy_step(vocabulary: int = 7, memory: int = 3, seed: int = 0):
    """A bigram 'model' for the searches: log-probabilities depend only on the previous token.

    Returns `(step, table)`: `step(ids, state) -> (log_probs, state, weights)`, the
    `textrnn.decoding.search` step contract, and the `(vocabulary, vocabulary)` table.
    """
    import tensorflow as tf

    table = tf.nn.log_softmax(tf.random.stateless_normal([vocabulary, vocabulary], [seed, 1]) * 2.0)

    def step(ids, state):
        return tf.gather(table, ids), {"t": state["t"] + 1.0}, tf.zeros([tf.shape(ids)[0], memory])

    return step, table


def attending_step(vocabulary: int = 7, memory: int = 4, seed: int = 0):
    """`toy_step` that also attends: the weights over `memory` source positions are a softmax
    of a per-token table, so each hypothesis covers the source differently."""
    import tensorflow as tf

    step, table = toy_step(vocabulary, memory, seed)
    scores = tf.random.stateless_normal([vocabulary, memory], [seed, 2]) * 3.0

    def attending(ids, state):
        log_probs, state, _ = step(ids, state)
        return log_probs, state, tf.nn.softmax(tf.gather(scores, ids))

    return attending, table
