"""In-graph decoding: sampling from logits (greedy, temperature, top-k, top-p).

Everything here is TensorFlow ops on tensors, so it runs inside a
`tf.while_loop`, under XLA and in an exported SavedModel. Request-time knobs
are tensors, not Python values, so one traced graph serves every setting.
Randomness is stateless and seeded per step (`step_seed`), and comes from an
integer hash of (seed, step, row, token) rather than TensorFlow's random ops,
whose streams differ between XLA and the regular kernels: the same seed gives
the same tokens in-process, under XLA, in a reloaded export and in a client
that samples one row step by step (`first_row`). The knobs and the seed may
also be given per row (`[batch]`, seeds `[batch, 2]`), so rows of different
requests sampled in one call draw what each would draw alone.

Conventions: `temperature` 0 is greedy (argmax); `top_k` 0 keeps every
token; `top_p` 1 keeps every token.

Example:

```python
logits = tf.constant([[0.0, 2.0, 1.0]])
sample_logits(logits, temperature=0.8, top_k=2, top_p=0.9, seed=step_seed(7, 0))
```
"""

from __future__ import annotations

import tensorflow as tf

# The bounds live in `options` (TensorFlow-free, so the edge runtime checks them too);
# re-exported here beside the graph assertions that mirror them.
from textrnn.decoding.options import MAX_TOKENS_CAP, validate_sampling_options  # noqa: F401


def assert_sampling_options(
    max_tokens: tf.Tensor,
    temperature: tf.Tensor,
    top_k: tf.Tensor,
    top_p: tf.Tensor,
    vocabulary_size: int,
    max_tokens_cap: int = MAX_TOKENS_CAP,
) -> list[tf.Operation]:
    """The same checks as `validate_sampling_options`, as graph assertions (for served requests)."""
    return [
        tf.debugging.assert_less_equal(
            max_tokens, max_tokens_cap, message=f"max_tokens must be <= {max_tokens_cap}"
        ),
        tf.debugging.assert_non_negative(max_tokens, message="max_tokens must be >= 0"),
        tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0"),
        tf.debugging.assert_less_equal(
            tf.cast(temperature, tf.float32),
            tf.float32.max,
            message="temperature must be a finite number",
        ),
        tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0"),
        tf.debugging.assert_less_equal(
            top_k,
            vocabulary_size,
            message=f"top_k must be <= the vocabulary size {vocabulary_size}",
        ),
        tf.debugging.assert_positive(top_p, message="top_p must be in (0, 1]"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
    ]


def step_seed(seed: tf.Tensor | int, step: tf.Tensor | int) -> tf.Tensor:
    """The stateless seed `[seed, step]` (int64, shape [2]) for decoding step `step`; for
    per-row seeds and steps (`[batch]` each), one such pair per row (`[batch, 2]`)."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)], axis=-1)


def _per_row(value: tf.Tensor | float, dtype: tf.DType) -> tf.Tensor:
    """A knob, one value for all rows or one per row (`[batch]`), as a column `(1 or batch, 1)`
    that broadcasts against `(batch, vocabulary)`: the same arithmetic either way."""
    return tf.reshape(tf.cast(value, dtype), [-1, 1])


def _very_negative(logits: tf.Tensor) -> tf.Tensor:
    return tf.constant(-1e9 if logits.dtype != tf.float16 else -6e4, logits.dtype)


def top_k_filter(logits: tf.Tensor, top_k: tf.Tensor | int) -> tf.Tensor:
    """Keep the `top_k` largest logits per row (ties at the k-th value kept); 0 keeps all.

    Args:
        logits: `(batch, vocabulary)`.
        top_k: int scalar tensor, or one per row (`[batch]`); may change per call without
            retracing.
    """
    vocabulary = tf.shape(logits)[-1]
    top_k = _per_row(top_k, tf.int32)  # (1 or batch, 1)
    k = tf.clip_by_value(top_k, 1, vocabulary)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")  # (batch, vocabulary)
    k = tf.broadcast_to(k, [tf.shape(logits)[0], 1])
    kth = tf.gather(ordered, k - 1, axis=-1, batch_dims=1)  # (batch, 1)
    drop = tf.logical_and(top_k > 0, logits < kth)
    return tf.where(drop, _very_negative(logits), logits)


def top_p_filter(logits: tf.Tensor, top_p: tf.Tensor | float) -> tf.Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability reaches `top_p`.

    The most likely token is always kept, so a tiny `top_p` is greedy.

    Args:
        logits: `(batch, vocabulary)`.
        top_p: float scalar in (0, 1], or one per row (`[batch]`); 1 keeps all.
    """
    top_p = _per_row(top_p, logits.dtype)  # (1 or batch, 1)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")  # (batch, vocabulary)
    probabilities = tf.nn.softmax(ordered, axis=-1)
    before = tf.cumsum(probabilities, axis=-1, exclusive=True)  # mass of the better tokens
    keep = before < top_p
    keep = tf.concat([tf.ones_like(keep[:, :1]), keep[:, 1:]], axis=-1)
    very_large = tf.constant(3e38 if logits.dtype == tf.float32 else 6e4, logits.dtype)
    threshold = tf.reduce_min(tf.where(keep, ordered, very_large), axis=-1, keepdims=True)
    drop = tf.logical_and(top_p < 1.0, logits < threshold)
    return tf.where(drop, _very_negative(logits), logits)


def _mix32(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finalizer: a bijection that scrambles every bit (uint32)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x85EBCA6B, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(13, tf.uint32)))
    x = x * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _word(value: tf.Tensor, shift: int) -> tf.Tensor:
    # A 32-bit word of an int64, as uint32 (bitcast keeps the bits, negative seeds too).
    value = tf.cast(value, tf.int64)
    if shift:
        value = tf.bitwise.right_shift(value, tf.constant(shift, tf.int64))
    return tf.cast(tf.bitwise.bitwise_and(value, tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)


def hash_uniform(shape: tf.Tensor, seed: tf.Tensor, first_row: tf.Tensor | int = 0) -> tf.Tensor:
    """Uniform floats in (0, 1) of `shape` (rows, columns) from a counter-based integer hash.

    Value (r, c) depends only on the seed, the batch row and `c`: identical under
    XLA and the regular kernels, and a client sampling row r alone
    (`first_row=r`) draws what row r of a batch draws. `seed` is shape [2] for
    every row or `[rows, 2]`, one per row; `first_row` a scalar (row r is batch
    row `first_row + r`) or `[rows]`, the batch row of each row.
    """
    seed = tf.reshape(tf.cast(seed, tf.int64), [-1, 2])  # (1 or rows, 2)
    first_row = tf.cast(first_row, tf.int64)
    if first_row.shape.rank == 1:
        rows = first_row
    else:
        rows = tf.cast(tf.range(shape[0]), tf.int64) + first_row
    columns = tf.cast(tf.range(shape[1]), tf.int64)
    counter = (
        rows[:, tf.newaxis] * tf.constant(1 << 20, tf.int64) + columns[tf.newaxis, :]
    )  # (rows, columns)
    seed_0, seed_1 = seed[:, 0:1], seed[:, 1:2]  # (1 or rows, 1): broadcast over columns
    x = _mix32(_word(counter, 0) ^ _mix32(_word(seed_0, 0) + tf.constant(0x9E3779B9, tf.uint32)))
    x = _mix32(x ^ _mix32(_word(seed_0, 32) ^ tf.constant(0x7F4A7C15, tf.uint32)))
    x = _mix32(x ^ _mix32(_word(seed_1, 0) + tf.constant(0x632BE59B, tf.uint32)))
    x = _mix32(x ^ _word(counter, 32) ^ _word(seed_1, 32))
    top24 = tf.cast(tf.bitwise.right_shift(x, tf.constant(8, tf.uint32)), tf.float32)
    return (top24 + 0.5) * (1.0 / (1 << 24))  # (rows, columns), strictly inside (0, 1)


def sample_logits(
    logits: tf.Tensor,
    temperature: tf.Tensor | float,
    top_k: tf.Tensor | int,
    top_p: tf.Tensor | float,
    seed: tf.Tensor,
    first_row: tf.Tensor | int = 0,
    banned: tf.Tensor | None = None,
) -> tf.Tensor:
    """Next token ids `int32 [batch]` from logits `(batch, vocabulary)`.

    Temperature scales the logits first, then top-k and top-p filter them,
    then one categorical draw per row seeded by `seed` (shape [2], see
    `step_seed`); `first_row` is the batch position of row 0 (for clients
    that sample one row of a larger batch). Temperature 0 returns the argmax.
    Rows of different requests in one batch: `temperature`, `top_k`, `top_p`
    and `first_row` `[batch]`, `seed` `[batch, 2]`; each row draws what it draws
    alone with those values.
    `banned` (bool `(vocabulary,)`) marks tokens never drawn at any temperature:
    they are masked after the scaling, which a huge temperature would undo.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = _per_row(temperature, tf.float32)  # (1 or batch, 1)
    scaled = logits / tf.maximum(temperature, 1e-6)
    if banned is not None:
        logits = tf.where(banned, _very_negative(logits), logits)
        scaled = tf.where(banned, _very_negative(scaled), scaled)
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (batch,)
    filtered = top_p_filter(top_k_filter(scaled, top_k), top_p)
    # Gumbel-max: argmax(logits + Gumbel noise) is a categorical draw, and unlike
    # StatelessMultinomial it compiles under XLA.
    uniform = hash_uniform(tf.shape(filtered), seed, first_row)
    gumbel = -tf.math.log(-tf.math.log(uniform))  # (batch, vocabulary)
    sampled = tf.argmax(filtered + gumbel, axis=-1, output_type=tf.int32)  # (batch,)
    return tf.where(temperature[:, 0] > 0.0, sampled, greedy)
