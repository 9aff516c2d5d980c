"""In-graph decoding: sampling from logits (greedy, temperature, top-k, top-p).

Everything here is TensorFlow ops on tensors, so it runs inside a
`tf.while_loop`, under XLA and in an exported SavedModel. Request-time knobs
are tensors, not Python values, so one traced graph serves every setting.
Randomness is stateless and seeded per step (`step_seed`), and comes from an
integer hash of (seed, step, row, token) rather than TensorFlow's random ops,
whose streams differ between XLA and the regular kernels: the same seed gives
the same tokens in-process, under XLA, in a reloaded export and in a client
that samples one row step by step (`first_row`).

Conventions: `temperature` 0 is greedy (argmax); `top_k` 0 keeps every
token; `top_p` 1 keeps every token.

Example:

```python
logits = tf.constant([[0.0, 2.0, 1.0]])
sample_logits(logits, temperature=0.8, top_k=2, top_p=0.9, seed=step_seed(7, 0))
```
"""

from __future__ import annotations

import math

import tensorflow as tf

from textrnn.errors import ConfigError

# Largest max_tokens a request may ask for: the output buffer is sized from it.
MAX_TOKENS_CAP = 10000


def validate_sampling_options(
    max_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    vocabulary_size: int,
    max_tokens_cap: int = MAX_TOKENS_CAP,
) -> None:
    """Raise `ConfigError` naming the option when a sampling knob is out of range."""
    if not 0 <= max_tokens <= max_tokens_cap:
        raise ConfigError(f"--max-tokens must be in [0, {max_tokens_cap}], got {max_tokens}")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(
            f"--temperature must be a finite number >= 0 (0 is greedy), got {temperature}"
        )
    if not 0 <= top_k <= vocabulary_size:
        raise ConfigError(
            f"--top-k must be in [0, {vocabulary_size}] (the vocabulary size; 0 is off), got {top_k}"
        )
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"--top-p must be in (0, 1] (1 is off), got {top_p}")


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
    """The stateless seed `[seed, step]` (int64, shape [2]) for decoding step `step`."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])


def _very_negative(logits: tf.Tensor) -> tf.Tensor:
    return tf.constant(-1e9 if logits.dtype != tf.float16 else -6e4, logits.dtype)


def top_k_filter(logits: tf.Tensor, top_k: tf.Tensor | int) -> tf.Tensor:
    """Keep the `top_k` largest logits per row (ties at the k-th value kept); 0 keeps all.

    Args:
        logits: `(batch, vocabulary)`.
        top_k: int scalar tensor; may change per call without retracing.
    """
    vocabulary = tf.shape(logits)[-1]
    top_k = tf.cast(top_k, tf.int32)
    k = tf.clip_by_value(top_k, 1, vocabulary)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")  # (batch, vocabulary)
    kth = tf.gather(ordered, k - 1, axis=-1)[:, tf.newaxis]  # (batch, 1)
    drop = tf.logical_and(top_k > 0, logits < kth)
    return tf.where(drop, _very_negative(logits), logits)


def top_p_filter(logits: tf.Tensor, top_p: tf.Tensor | float) -> tf.Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability reaches `top_p`.

    The most likely token is always kept, so a tiny `top_p` is greedy.

    Args:
        logits: `(batch, vocabulary)`.
        top_p: float scalar in (0, 1]; 1 keeps all.
    """
    top_p = tf.cast(top_p, logits.dtype)
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

    Value (r, c) depends only on `seed` (shape [2]), `first_row + r` and `c`:
    identical under XLA and the regular kernels, and a client sampling row r
    alone (`first_row=r`) draws what row r of a batch draws.
    """
    seed = tf.cast(seed, tf.int64)
    rows = tf.cast(tf.range(shape[0]), tf.int64) + tf.cast(first_row, tf.int64)
    columns = tf.cast(tf.range(shape[1]), tf.int64)
    counter = (
        rows[:, tf.newaxis] * tf.constant(1 << 20, tf.int64) + columns[tf.newaxis, :]
    )  # (rows, columns)
    x = _mix32(_word(counter, 0) ^ _mix32(_word(seed[0], 0) + tf.constant(0x9E3779B9, tf.uint32)))
    x = _mix32(x ^ _mix32(_word(seed[0], 32) ^ tf.constant(0x7F4A7C15, tf.uint32)))
    x = _mix32(x ^ _mix32(_word(seed[1], 0) + tf.constant(0x632BE59B, tf.uint32)))
    x = _mix32(x ^ _word(counter, 32) ^ _word(seed[1], 32))
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
    `banned` (bool `(vocabulary,)`) marks tokens never drawn at any temperature:
    they are masked after the scaling, which a huge temperature would undo.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
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
    return tf.where(temperature > 0.0, sampled, greedy)


# ----------------------------------------------------------------------------- sequence decoding
#
# Greedy and beam search for encoder-decoder models (translation). The model is
# a `step_fn(ids, state) -> (log_probs, state, attention)`:
#   ids        int32 (n,)          the previous token of each hypothesis
#   state      nested tensors      leading dimension n (tiled per beam by beam_search)
#   log_probs  float32 (n, vocab)  log-probabilities of the next token
#   attention  float32 (n, memory) attention weights of this step (zeros if none)
# Anything per sentence that the step reads but never updates (encoder outputs,
# source mask) is closed over by step_fn, tiled with `tile_beams` for beams.

NEGATIVE = -1e9  # "impossible" log-probability; finite, so no inf - inf NaNs


def gnmt_length_penalty(lengths: tf.Tensor, alpha: tf.Tensor | float) -> tf.Tensor:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016); alpha 0 is 1."""
    lengths = tf.cast(lengths, tf.float32)
    return tf.pow((5.0 + lengths) / 6.0, tf.cast(alpha, tf.float32))


def tile_beams(tensor: tf.Tensor, beam_size: tf.Tensor | int) -> tf.Tensor:
    """(batch, ...) -> (batch * beam, ...), each row repeated `beam_size` times in place."""
    return tf.repeat(tensor, beam_size, axis=0)


def _force_eos(log_probs: tf.Tensor, force: tf.Tensor, eos_id: int) -> tf.Tensor:
    """Rows where `force` (n,) is True may only emit EOS (output length cap)."""
    is_eos = tf.equal(tf.range(tf.shape(log_probs)[-1]), eos_id)  # (vocab,)
    eos_only = tf.where(is_eos[tf.newaxis, :], log_probs, tf.constant(NEGATIVE, log_probs.dtype))
    return tf.where(force[:, tf.newaxis], eos_only, log_probs)


def greedy_search(
    step_fn,
    initial_state,
    max_lengths: tf.Tensor,
    bos_id: int,
    eos_id: int,
    memory_length: tf.Tensor | int,
    length_penalty: tf.Tensor | float = 0.0,
    static_shapes: bool = False,
) -> dict[str, tf.Tensor]:
    """Argmax decoding of a batch, in one `tf.while_loop` (compiles under XLA).

    Args:
        step_fn: see the module section comment.
        initial_state: nested tensors, leading dimension batch.
        max_lengths: int32 (batch,): tokens allowed per sentence, EOS included;
            a sentence that reaches its cap ends with a forced EOS.
        bos_id, eos_id: start and end token ids.
        memory_length: width of the attention weights (source time steps).
        length_penalty: GNMT alpha used for the reported `score`.
        static_shapes: return `time` = max(max_lengths) columns (0-padded)
            instead of the steps that ran: fixed output shapes, as XLA /
            TPUs need when max_lengths is a compile-time constant.

    Returns:
        `ids` int32 (batch, time) ending in EOS then 0-padded, `lengths` (batch,)
        including EOS, `log_prob` and `score` (log_prob / length penalty)
        (batch,), `attention` float32 (batch, time, memory_length).
    """
    max_lengths = tf.cast(max_lengths, tf.int32)
    batch = tf.shape(max_lengths)[0]
    limit = tf.reduce_max(tf.concat([max_lengths, [0]], axis=0))
    # Time-major buffers of a fixed size (XLA needs bounded shapes), written at `step`.
    width = tf.maximum(limit, 1)  # an empty batch still runs (and writes) one step
    ids_buffer = tf.zeros([width, batch], tf.int32)
    attention_buffer = tf.zeros([width, batch, memory_length], tf.float32)

    def condition(step, previous, state, finished, log_prob, lengths, ids_buffer, attention_buffer):
        # At least one step, so an empty batch still returns (0-row) outputs.
        running = tf.logical_and(step < limit, tf.logical_not(tf.reduce_all(finished)))
        return tf.logical_or(tf.equal(step, 0), running)

    def body(step, previous, state, finished, log_prob, lengths, ids_buffer, attention_buffer):
        log_probs, state, attention = step_fn(
            previous, state
        )  # (batch, vocab), ..., (batch, memory)
        log_probs = _force_eos(tf.cast(log_probs, tf.float32), step >= max_lengths - 1, eos_id)
        token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # (batch,)
        token_log_prob = tf.gather(log_probs, token, batch_dims=1)
        token = tf.where(finished, 0, token)
        log_prob += tf.where(finished, 0.0, token_log_prob)
        lengths += tf.cast(tf.logical_not(finished), tf.int32)
        attention = tf.where(finished[:, tf.newaxis], 0.0, tf.cast(attention, tf.float32))
        finished = tf.logical_or(finished, tf.equal(token, eos_id))
        at = [[step]]
        return (
            step + 1,
            token,
            state,
            finished,
            log_prob,
            lengths,
            tf.tensor_scatter_nd_update(ids_buffer, at, token[tf.newaxis]),
            tf.tensor_scatter_nd_update(attention_buffer, at, attention[tf.newaxis]),
        )

    steps, _, _, _, log_prob, lengths, ids_buffer, attention_buffer = tf.while_loop(
        condition,
        body,
        (
            tf.constant(0),
            tf.fill([batch], bos_id),
            initial_state,
            tf.zeros([batch], tf.bool),
            tf.zeros([batch], tf.float32),
            tf.zeros([batch], tf.int32),
            ids_buffer,
            attention_buffer,
        ),
        maximum_iterations=width,
    )
    if not static_shapes:  # only the steps that ran
        ids_buffer, attention_buffer = ids_buffer[:steps], attention_buffer[:steps]
    ids = tf.transpose(ids_buffer)  # (batch, time)
    attention = tf.transpose(attention_buffer, [1, 0, 2])  # (batch, time, memory)
    return {
        "ids": ids,
        "lengths": lengths,
        "log_prob": log_prob,
        "score": log_prob / gnmt_length_penalty(lengths, length_penalty),
        "attention": attention,
    }


def beam_search(
    step_fn,
    initial_state,
    max_lengths: tf.Tensor,
    beam_size: tf.Tensor | int,
    bos_id: int,
    eos_id: int,
    memory_length: tf.Tensor | int,
    length_penalty: tf.Tensor | float = 0.6,
    n_best: tf.Tensor | int = 1,
    static_shapes: bool = False,
) -> dict[str, tf.Tensor]:
    """Batched beam search in one `tf.while_loop`, hypotheses ranked by the GNMT score.

    Each step expands every live hypothesis, keeps the `beam_size` best by
    log-probability, and moves those ending in EOS to a finished set of
    `beam_size` ranked by `log P / ((5 + length) / 6) ** alpha`. A sentence is
    done when the best expansion ends in EOS and `n_best` hypotheses are
    finished, when no live hypothesis is left, or at its length cap (where EOS
    is forced). With `beam_size` 1 this is exactly `greedy_search`.

    Args:
        step_fn: see the module section comment; called with `batch * beam` rows.
        initial_state: nested tensors with leading dimension batch (tiled here).
        max_lengths: int32 (batch,): tokens allowed per sentence, EOS included.
        beam_size: int scalar (a tensor is fine: one graph serves every size).
        bos_id, eos_id: start and end token ids.
        memory_length: width of the attention weights.
        length_penalty: GNMT alpha.
        n_best: finished hypotheses wanted before stopping early.
        static_shapes: as in `greedy_search` (`time` = max(max_lengths)).

    Returns:
        `ids` int32 (batch, beam, time), `lengths`, `log_prob`, `score`
        (batch, beam) sorted by descending score (unused slots score
        `NEGATIVE`), `attention` float32 (batch, beam, time, memory_length).
    """
    max_lengths = tf.cast(max_lengths, tf.int32)
    beam_size = tf.cast(beam_size, tf.int32)
    alpha = tf.cast(length_penalty, tf.float32)
    batch = tf.shape(max_lengths)[0]
    limit = tf.reduce_max(tf.concat([max_lengths, [0]], axis=0))
    state = tf.nest.map_structure(lambda t: tile_beams(t, beam_size), initial_state)
    alive_log_prob = tf.concat(
        [tf.zeros([batch, 1]), tf.fill([batch, beam_size - 1], NEGATIVE)], axis=1
    )  # (batch, beam): one live hypothesis to start from
    # Hypotheses live in buffers of a fixed width (XLA needs bounded shapes); step t writes column t.
    width = tf.maximum(limit, 1)
    positions = tf.range(width)
    empty_ids = tf.zeros([batch, beam_size, width], tf.int32)
    empty_attention = tf.zeros([batch, beam_size, width, memory_length], tf.float32)
    beam_offsets = (tf.range(batch) * beam_size)[:, tf.newaxis]  # (batch, 1)

    def gather_beams(tensor: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return tf.gather(tensor, indices, batch_dims=1)

    def condition(step, *loop):
        done = loop[-1]
        return tf.logical_and(step < limit, tf.logical_not(tf.reduce_all(done)))

    def body(
        step,
        previous,
        state,
        alive_ids,
        alive_log_prob,
        alive_attention,
        finished_ids,
        finished_log_prob,
        finished_score,
        finished_lengths,
        finished_attention,
        done,
    ):
        log_probs, state, attention = step_fn(
            previous, state
        )  # (batch*beam, vocab), ..., (batch*beam, memory)
        vocabulary = tf.shape(log_probs)[-1]
        force = tf.repeat(step >= max_lengths - 1, beam_size)  # (batch*beam,)
        log_probs = _force_eos(tf.cast(log_probs, tf.float32), force, eos_id)
        candidates = alive_log_prob[:, :, tf.newaxis] + tf.reshape(
            log_probs, [batch, beam_size, vocabulary]
        )
        top_log_prob, top_index = tf.math.top_k(
            tf.reshape(candidates, [batch, -1]), k=beam_size
        )  # (batch, beam)
        origin = top_index // vocabulary  # which hypothesis each candidate extends
        token = top_index % vocabulary
        at_step = tf.equal(positions, step)  # (width,): the column this step writes
        candidate_ids = tf.where(
            at_step, token[:, :, tf.newaxis], gather_beams(alive_ids, origin)
        )  # (batch, beam, width)
        step_attention = gather_beams(
            tf.reshape(tf.cast(attention, tf.float32), [batch, beam_size, memory_length]), origin
        )
        candidate_attention = tf.where(
            at_step[:, tf.newaxis],
            step_attention[:, :, tf.newaxis, :],
            gather_beams(alive_attention, origin),
        )  # (batch, beam, width, memory)
        state = tf.nest.map_structure(
            lambda t: tf.gather(t, tf.reshape(origin + beam_offsets, [-1])), state
        )
        live = tf.logical_and(top_log_prob > NEGATIVE / 2, tf.logical_not(done)[:, tf.newaxis])
        ends = tf.logical_and(live, tf.equal(token, eos_id))  # (batch, beam)

        # Merge the candidates that end here into the finished set (beam best by score).
        length = step + 1
        new_score = tf.where(ends, top_log_prob / gnmt_length_penalty(length, alpha), NEGATIVE)
        all_ids = tf.concat([finished_ids, candidate_ids], axis=1)  # (batch, 2*beam, width)
        all_attention = tf.concat([finished_attention, candidate_attention], axis=1)
        all_score = tf.concat([finished_score, new_score], axis=1)
        all_log_prob = tf.concat(
            [finished_log_prob, tf.where(ends, top_log_prob, NEGATIVE)], axis=1
        )
        all_lengths = tf.concat([finished_lengths, tf.fill([batch, beam_size], length)], axis=1)
        finished_score, keep = tf.math.top_k(all_score, k=beam_size)
        finished_ids = gather_beams(all_ids, keep)
        finished_attention = gather_beams(all_attention, keep)
        finished_log_prob = gather_beams(all_log_prob, keep)
        finished_lengths = gather_beams(all_lengths, keep)

        alive_log_prob = tf.where(
            tf.logical_and(live, tf.logical_not(ends)), top_log_prob, NEGATIVE
        )
        finished_count = tf.reduce_sum(tf.cast(finished_score > NEGATIVE / 2, tf.int32), axis=1)
        best_ended = tf.logical_and(ends[:, 0], finished_count >= tf.minimum(n_best, beam_size))
        no_live = tf.reduce_all(alive_log_prob <= NEGATIVE / 2, axis=1)
        done = done | best_ended | no_live | (length >= max_lengths)
        alive_log_prob = tf.where(done[:, tf.newaxis], NEGATIVE, alive_log_prob)
        return (
            length,
            tf.reshape(token, [-1]),
            state,
            candidate_ids,
            alive_log_prob,
            candidate_attention,
            finished_ids,
            finished_log_prob,
            finished_score,
            finished_lengths,
            finished_attention,
            done,
        )

    initial = (
        tf.constant(0),
        tf.fill([batch * beam_size], bos_id),
        state,
        empty_ids,
        alive_log_prob,
        empty_attention,
        empty_ids,
        tf.fill([batch, beam_size], NEGATIVE),
        tf.fill([batch, beam_size], NEGATIVE),
        tf.zeros([batch, beam_size], tf.int32),
        empty_attention,
        tf.zeros([batch], tf.bool),
    )
    loop = tf.while_loop(
        condition,
        body,
        initial,
        # Batch and beam sizes may be tensors: only the ranks (and the states' inner sizes) are fixed.
        shape_invariants=(
            *(tf.TensorShape([None] * t.shape.rank) for t in initial[:2]),
            tf.nest.map_structure(lambda t: tf.TensorShape([None]).concatenate(t.shape[1:]), state),
            *(tf.TensorShape([None] * t.shape.rank) for t in initial[3:]),
        ),
        maximum_iterations=width,
    )
    finished_ids, finished_log_prob, finished_score, finished_lengths, finished_attention = loop[
        6:11
    ]
    if not static_shapes:  # only the steps that ran
        steps = loop[0]
        finished_ids, finished_attention = (
            finished_ids[:, :, :steps],
            finished_attention[:, :, :steps],
        )
    # Tokens after a hypothesis's EOS are 0: columns are written only while it is alive.
    return {
        "ids": finished_ids,
        "lengths": finished_lengths,
        "log_prob": finished_log_prob,
        "score": finished_score,
        "attention": finished_attention,
    }
