"""Greedy and beam search for encoder-decoder models (translation), in the graph.

The model is a `step_fn(ids, state) -> (log_probs, state, attention)`:
  ids        int32 (n,)          the previous token of each hypothesis
  state      nested tensors      leading dimension n (tiled per beam by beam_search)
  log_probs  float32 (n, vocab)  log-probabilities of the next token
  attention  float32 (n, memory) attention weights of this step (zeros if none)
Anything per sentence that the step reads but never updates (encoder outputs,
source mask) is closed over by step_fn, tiled with `tile_beams` for beams.
Both searches are one `tf.while_loop` each (documented kernels; they compile under XLA); beam
search then walks its per-step attention records back once (`_attention_histories`).
Both take `no_repeat_ngram` (block repeated n-grams) and `coverage_penalty` (GNMT's, added
to finished hypotheses' scores): `textrnn.decoding.penalties` says what they compute.
"""

from __future__ import annotations

import tensorflow as tf

from textrnn.decoding import penalties
from textrnn.decoding.penalties import NEGATIVE  # "impossible" log-probability; finite

# Added to the rank (not the score) of a hypothesis that ended only because EOS was forced
# at its length cap: any hypothesis that chose EOS itself ranks first, as in tensor2tensor's
# beam search (a capped one is kept only when nothing finished). Far below any score, far
# above NEGATIVE.
CAPPED_RANK = -1.0e4


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
    no_repeat_ngram: tf.Tensor | int = 0,
    coverage_penalty: tf.Tensor | float = 0.0,
    memory_mask: tf.Tensor | None = None,
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
        no_repeat_ngram: N > 0: never emit a token that repeats an N-gram of the output.
        coverage_penalty: GNMT beta: adds `penalties.coverage_penalty` to `score` (one
            hypothesis: it changes the score, not the output).
        memory_mask: bool (batch, memory_length), True on real source tokens (None: all).

    Returns:
        `ids` int32 (batch, time) ending in EOS then 0-padded, `lengths` (batch,)
        including EOS, `log_prob` and `score` (log_prob / length penalty + coverage
        penalty) (batch,), `attention` float32 (batch, time, memory_length).
    """
    max_lengths = tf.cast(max_lengths, tf.int32)
    batch = tf.shape(max_lengths)[0]
    limit = tf.reduce_max(tf.concat([max_lengths, [0]], axis=0))
    # Time-major buffers of a fixed size (XLA needs bounded shapes), written at `step`.
    width = tf.maximum(limit, 1)  # an empty batch still runs (and writes) one step
    ids_buffer = tf.zeros([width, batch], tf.int32)
    attention_buffer = tf.zeros([width, batch, memory_length], tf.float32)

    def condition(step, previous, state, finished, log_prob, lengths, *buffers):
        # At least one step, so an empty batch still returns (0-row) outputs.
        running = tf.logical_and(step < limit, tf.logical_not(tf.reduce_all(finished)))
        return tf.logical_or(tf.equal(step, 0), running)

    def body(
        step,
        previous,
        state,
        finished,
        log_prob,
        lengths,
        ids_buffer,
        attention_buffer,
        suffix_match,
        coverage,
    ):
        log_probs, state, attention = step_fn(
            previous, state
        )  # (batch, vocab), ..., (batch, memory)
        history = tf.transpose(ids_buffer)  # (batch, width): the tokens before `step`
        log_probs = penalties.block_repeated_ngrams(
            tf.cast(log_probs, tf.float32), suffix_match, history, step, no_repeat_ngram
        )
        log_probs = _force_eos(log_probs, step >= max_lengths - 1, eos_id)
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
            penalties.update_suffix_match(suffix_match, history, token, step),
            coverage + attention,
        )

    steps, _, _, _, log_prob, lengths, ids_buffer, attention_buffer, _, coverage = tf.while_loop(
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
            penalties.empty_suffix_match(batch, width),
            tf.zeros([batch, memory_length], tf.float32),
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
        "score": log_prob / gnmt_length_penalty(lengths, length_penalty)
        + penalties.coverage_penalty(coverage, memory_mask, coverage_penalty),
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
    no_repeat_ngram: tf.Tensor | int = 0,
    coverage_penalty: tf.Tensor | float = 0.0,
    memory_mask: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Batched beam search in one `tf.while_loop`, hypotheses ranked by the GNMT score.

    Each step expands every live hypothesis, keeps the `beam_size` best by
    log-probability, and moves those ending in EOS to a finished set of
    `beam_size` ranked by `log P / ((5 + length) / 6) ** alpha` (plus the coverage
    penalty when `coverage_penalty` > 0); hypotheses cut at the length cap (EOS forced)
    rank after every one that ended by itself. A sentence is done when the best
    expansion ends in EOS and `n_best` hypotheses are finished, when no live
    hypothesis is left, or at its length cap (where EOS is forced). With
    `beam_size` 1 this is exactly `greedy_search`.

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
        no_repeat_ngram, coverage_penalty, memory_mask: as in `greedy_search`; the
            coverage penalty ranks finished hypotheses (live ones go by log P).

    Returns:
        `ids` int32 (batch, beam, time), `lengths`, `log_prob`, `score`
        (batch, beam) sorted by descending score, those cut at the cap last (unused
        slots score `NEGATIVE`), `attention` float32 (batch, beam, time, memory_length).
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
    # Hypotheses live in buffers of a fixed width (XLA needs bounded shapes); step t writes
    # column t.
    width = tf.maximum(limit, 1)
    positions = tf.range(width)
    empty_ids = tf.zeros([batch, beam_size, width], tf.int32)
    # Attention weights are not copied along with each hypothesis (gathering and rewriting
    # every (width, memory) history at every step cost 4% of the CPU of beam-5 decoding to
    # 80 tokens, issue 21): each step writes its candidates' weights and where they came
    # from, and `_attention_histories` follows those back from where the finished ones ended.
    step_attention_ta = tf.TensorArray(tf.float32, size=width, element_shape=[None, None, None])
    origin_ta = tf.TensorArray(tf.int32, size=width, element_shape=[None, None])
    beam_offsets = (tf.range(batch) * beam_size)[:, tf.newaxis]  # (batch, 1)
    mask = None if memory_mask is None else tf.cast(memory_mask, tf.bool)[:, tf.newaxis, :]

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
        alive_match,
        alive_coverage,
        step_attention_ta,
        origin_ta,
        finished_ids,
        finished_log_prob,
        finished_score,
        finished_lengths,
        finished_slot,
        finished_capped,
        done,
    ):
        log_probs, state, attention = step_fn(
            previous, state
        )  # (batch*beam, vocab), ..., (batch*beam, memory)
        vocabulary = tf.shape(log_probs)[-1]
        rows = [batch * beam_size, width]
        log_probs = penalties.block_repeated_ngrams(
            tf.cast(log_probs, tf.float32),
            tf.reshape(alive_match, rows),
            tf.reshape(alive_ids, rows),
            step,
            no_repeat_ngram,
        )
        force = tf.repeat(step >= max_lengths - 1, beam_size)  # (batch*beam,)
        log_probs = _force_eos(log_probs, force, eos_id)
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
        step_attention_ta = step_attention_ta.write(step, step_attention)
        origin_ta = origin_ta.write(step, origin)
        candidate_match = tf.reshape(
            penalties.update_suffix_match(
                tf.reshape(gather_beams(alive_match, origin), rows),
                tf.reshape(candidate_ids, rows),
                tf.reshape(token, [-1]),
                step,
            ),
            [batch, beam_size, width],
        )
        candidate_coverage = gather_beams(alive_coverage, origin) + step_attention
        state = tf.nest.map_structure(
            lambda t: tf.gather(t, tf.reshape(origin + beam_offsets, [-1])), state
        )
        live = tf.logical_and(top_log_prob > NEGATIVE / 2, tf.logical_not(done)[:, tf.newaxis])
        ends = tf.logical_and(live, tf.equal(token, eos_id))  # (batch, beam)

        # Merge the candidates that end here into the finished set (beam best by score).
        length = step + 1
        new_score = top_log_prob / gnmt_length_penalty(length, alpha) + penalties.coverage_penalty(
            candidate_coverage, mask, coverage_penalty
        )
        new_score = tf.where(ends, new_score, NEGATIVE)
        new_capped = tf.logical_and(ends, tf.reshape(force, [batch, beam_size]))
        all_ids = tf.concat([finished_ids, candidate_ids], axis=1)  # (batch, 2*beam, width)
        # Where each finished hypothesis ended: its candidate slot at step `length - 1`.
        all_slot = tf.concat([finished_slot, tf.zeros_like(origin) + tf.range(beam_size)], axis=1)
        all_score = tf.concat([finished_score, new_score], axis=1)
        all_log_prob = tf.concat(
            [finished_log_prob, tf.where(ends, top_log_prob, NEGATIVE)], axis=1
        )
        all_lengths = tf.concat([finished_lengths, tf.fill([batch, beam_size], length)], axis=1)
        all_capped = tf.concat([finished_capped, new_capped], axis=1)
        _, keep = tf.math.top_k(tf.where(all_capped, all_score + CAPPED_RANK, all_score), beam_size)
        finished_score = gather_beams(all_score, keep)
        finished_capped = gather_beams(all_capped, keep)
        finished_ids = gather_beams(all_ids, keep)
        finished_slot = gather_beams(all_slot, keep)
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
            candidate_match,
            candidate_coverage,
            step_attention_ta,
            origin_ta,
            finished_ids,
            finished_log_prob,
            finished_score,
            finished_lengths,
            finished_slot,
            finished_capped,
            done,
        )

    initial = (
        tf.constant(0),
        tf.fill([batch * beam_size], bos_id),
        state,
        empty_ids,
        alive_log_prob,
        empty_ids,  # no suffix matches yet
        tf.zeros([batch, beam_size, memory_length], tf.float32),  # coverage
        step_attention_ta,
        origin_ta,
        empty_ids,
        tf.fill([batch, beam_size], NEGATIVE),
        tf.fill([batch, beam_size], NEGATIVE),
        tf.zeros([batch, beam_size], tf.int32),
        tf.zeros([batch, beam_size], tf.int32),  # finished_slot
        tf.zeros([batch, beam_size], tf.bool),  # finished_capped
        tf.zeros([batch], tf.bool),
    )
    loop = tf.while_loop(
        condition,
        body,
        initial,
        # Batch and beam sizes may be tensors: only the ranks (and the states' inner sizes)
        # are fixed.
        shape_invariants=(
            *(tf.TensorShape([None] * t.shape.rank) for t in initial[:2]),
            tf.nest.map_structure(lambda t: tf.TensorShape([None]).concatenate(t.shape[1:]), state),
            *(tf.TensorShape([None] * t.shape.rank) for t in initial[3:7]),
            tf.TensorShape(None),  # the step TensorArrays
            tf.TensorShape(None),
            *(tf.TensorShape([None] * t.shape.rank) for t in initial[9:]),
        ),
        maximum_iterations=width,
    )
    steps = loop[0]
    finished_ids, finished_log_prob, finished_score, finished_lengths, finished_slot = loop[9:14]
    attention = _attention_histories(
        *loop[7:9],
        steps,
        width if static_shapes else steps,
        finished_slot,
        finished_lengths,
        memory_length,
    )
    if not static_shapes:  # only the steps that ran
        finished_ids = finished_ids[:, :, :steps]
    # Tokens after a hypothesis's EOS are 0: columns are written only while it is alive.
    return {
        "ids": finished_ids,
        "lengths": finished_lengths,
        "log_prob": finished_log_prob,
        "score": finished_score,
        "attention": attention,
    }


def _attention_histories(step_attention_ta, origin_ta, steps, width, slots, lengths, memory):
    """The attention weights of each finished hypothesis, (batch, beam, width, memory).

    Walks back from the last column: a hypothesis that ended at step `lengths - 1` in
    candidate slot `slots` took that step's weights from its slot and came from the slot
    `origin` names at the step before; columns after its end (and unused slots, length 0)
    are zeros. `width` >= `steps` columns (the buffer width under static shapes).
    """
    last = lengths - 1  # (batch, beam): the step each hypothesis ended at; -1 when unused
    no_weights = tf.zeros(tf.concat([tf.shape(slots), [memory]], axis=0), tf.float32)

    def body(step, slots, columns):
        weights, origin = tf.cond(
            step < steps,  # columns past the last step: nothing was written there
            lambda: (step_attention_ta.read(step), origin_ta.read(step)),
            lambda: (no_weights, tf.zeros_like(slots)),
        )
        active = step <= last
        taken = tf.gather(weights, slots, batch_dims=1)
        columns = columns.write(step, tf.where(active[..., tf.newaxis], taken, 0.0))
        slots = tf.where(active, tf.gather(origin, slots, batch_dims=1), slots)
        return step - 1, slots, columns

    columns_made = tf.maximum(width, 1)  # an empty TensorArray of unknown shape cannot stack
    columns = tf.TensorArray(tf.float32, size=columns_made, element_shape=[None, None, None])
    _, _, columns = tf.while_loop(
        lambda step, *_: step >= 0,
        body,
        (columns_made - 1, slots, columns),
        maximum_iterations=columns_made,
    )
    return tf.transpose(columns.stack(), [1, 2, 0, 3])[:, :, :width]
