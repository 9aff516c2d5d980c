"""The fast CPU loop of an attention decoder with input feeding (Luong et al. 2015):
one recurrent layer (GRU with reset_after, or LSTM), attention (additive, dot or
general) and the attentional vector, fused in one XLA-compiled `tf.while_loop` (plain
TensorFlow in bfloat16) with a hand-written backward loop, as `fast_rnn_kernels` does
for the plain stack.

Per target step t, in the weights' Keras layouts (`textrnn.translation.decoder`):

    gates_t  = x_t + a_{t-1} K_feed [+ h_{t-1} R + b_rec]      x_t: hoisted, see below
    h_t      = cell(gates_t, h_{t-1})
    scores_t = additive: v . tanh(h_t W_q + keys)
               dot: h_t . memory      general: (h_t W_g + b) . memory
    w_t      = softmax(scores_t masked) * mask;      context_t = w_t memory
    a_t      = tanh([context_t; h_t] W_a) * dropout_mask_t        (fed to the next step)

What does not depend on the previous step is computed outside the loop, as large
products that TensorFlow differentiates itself: the embedding part of the input
projection for every target position (`x = embedded K_embedding + b`) and the memory
projection of additive attention (`keys = memory W_m + b_m`). The loop then does, per
step, the two small products of the cell, the query product, the scores and context
over the source positions, and the attentional product. The backward loop walks the
steps in reverse doing only the per-step derivatives and the products that carry the
gradient to the previous step (`d_gates R^T`, `d_gates K_feed^T`); the weight gradients
are large products after the loop (`H^T dQ`, `[C; H]^T dA`, ...), and the additive
attention's `d_keys` and score-vector gradient are accumulated in the loop.

`attention_decoder_sequence` pads time, source positions and batch up to multiples of 8
before the compiled loops and slices the results back: target steps are causal, padded
source positions are masked (weight exactly 0) and padded rows are independent, so the
real entries are unchanged, while the number of shapes XLA compiles for stays small
(sentence lengths vary by batch).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from textrnn.layers.fast_rnn_kernels import compile_once

_PAD_TO = 8
_NEGATIVE = -1e9


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """The static configuration of a fused decoder loop (a compilation key).

    cell: "gru" (reset_after) or "lstm". attention: "additive", "dot" or "general".
    query_bias: general attention's query projection has a bias. dropout: a dropout
    mask on the attentional vector is given.
    """

    cell: str
    attention: str
    query_bias: bool = False
    dropout: bool = False

    @property
    def state_count(self) -> int:
        return 2 if self.cell == "lstm" else 1

    @property
    def cell_weight_count(self) -> int:
        return 3 if self.cell == "gru" else 2  # kernel_feed, recurrent_kernel[, recurrent_bias]

    @property
    def attention_weight_count(self) -> int:
        if self.attention == "additive":
            return 2  # query kernel, score vector
        if self.attention == "general":
            return 2 if self.query_bias else 1
        return 0


# ----------------------------------------------------------------------------- one step


def cell_forward(spec: DecoderSpec, gates_x, states, cell_weights):
    """One cell step from its input gates `gates_x` (B, kU) (input projection, bias
    included). Returns `(h, new_states, saved)`; `saved` is what the backward needs."""
    if spec.cell == "gru":
        recurrent_kernel, recurrent_bias = cell_weights[1], cell_weights[2]
        (h,) = states
        inner = tf.matmul(h, recurrent_kernel) + recurrent_bias  # (B, 3U)
        x_z, x_r, x_h = tf.split(gates_x, 3, axis=-1)
        r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
        z = tf.sigmoid(x_z + r_z)
        r = tf.sigmoid(x_r + r_r)
        hh = tf.tanh(x_h + r * r_h)
        h_new = z * h + (1.0 - z) * hh
        return h_new, [h_new], tf.concat([z, r, hh, r_h], axis=-1)
    recurrent_kernel = cell_weights[1]
    h, c = states
    z = gates_x + tf.matmul(h, recurrent_kernel)  # (B, 4U), gates i, f, c, o
    z_i, z_f, z_g, z_o = tf.split(z, 4, axis=-1)
    i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_g), tf.sigmoid(z_o)
    c_new = f * c + i * g
    h_new = o * tf.tanh(c_new)
    return h_new, [h_new, c_new], tf.concat([i, f, g, o], axis=-1)


def attend_forward(spec: DecoderSpec, h, memory, keys, keep, attention_weights):
    """Attention of one step: `(weights (B, S), context (B, M), saved)`; `keep` is the
    (B, S) boolean source mask; `saved` the query projection (additive, general)."""
    saved = h
    if spec.attention == "additive":
        query_kernel, score_vector = attention_weights
        saved = tf.matmul(h, query_kernel)  # (B, A)
        hidden = tf.tanh(saved[:, None, :] + keys)  # (B, S, A)
        scores = tf.reduce_sum(hidden * score_vector, axis=-1)  # (B, S)
    else:
        if spec.attention == "general":
            saved = tf.matmul(h, attention_weights[0])  # (B, M)
            if spec.query_bias:
                saved = saved + attention_weights[1]
        scores = tf.linalg.matvec(memory, saved)  # (B, S)
    scores = tf.where(keep, scores, tf.constant(_NEGATIVE, scores.dtype))
    weights = tf.nn.softmax(scores, axis=-1) * tf.cast(keep, scores.dtype)
    context = tf.linalg.matvec(memory, weights, transpose_a=True)  # (B, M)
    return weights, context, saved


def attentional_forward(context, h, attentional_kernel):
    """tanh([context; h] W_a): (B, F)."""
    return tf.tanh(tf.matmul(tf.concat([context, h], axis=-1), attentional_kernel))


def decoder_step(spec: DecoderSpec, gates_x, feed, states, memory, keys, keep, weights):
    """One decoding step (no dropout): `(attentional (B, F), weights (B, S), new states)`.

    `gates_x` is the embedding part of the input projection (bias included); `weights`
    the flat weight list of `split_weights`' order.
    """
    cell_weights, attention_weights, attentional_kernel = split_weights(spec, weights)
    gates_x = gates_x + tf.matmul(feed, cell_weights[0])
    h, states, _ = cell_forward(spec, gates_x, states, cell_weights)
    attention, context, _ = attend_forward(spec, h, memory, keys, keep, attention_weights)
    return attentional_forward(context, h, attentional_kernel), attention, states


def split_weights(spec: DecoderSpec, weights):
    """Flat weights -> (cell weights, attention weights, attentional kernel).

    Order: kernel_feed (F, kU), recurrent_kernel (U, kU), [GRU: recurrent bias (kU,)],
    attention weights (additive: query kernel (U, A), score vector (A,); general:
    query kernel (U, M)[, bias (M,)]), attentional kernel (M + U, F).
    """
    cells = spec.cell_weight_count
    attention_end = cells + spec.attention_weight_count
    return list(weights[:cells]), list(weights[cells:attention_end]), weights[attention_end]


# ----------------------------------------------------------------------------- forward loop


def _forward(spec, x, states0, feed0, memory, keys, keep, dropout_mask, *weights):
    """The teacher-forced loop over time-major `x` (T, B, kU).

    Returns outputs (T, B, F) (the fed attentional vectors, after dropout), attention
    weights (T, B, S), and what the backward needs: states (T, B, U) per state kind, the
    cell's saved gates, contexts (T, B, M), attentional vectors before dropout (T, B, F),
    the attention's saved query projections.
    """
    cell_weights, attention_weights, attentional_kernel = split_weights(spec, weights)
    steps = tf.shape(x)[0]
    dtype = x.dtype

    def body(t, feed, states, arrays):
        gates_x = x[t] + tf.matmul(feed, cell_weights[0])
        h, states, cell_saved = cell_forward(spec, gates_x, states, cell_weights)
        attention, context, query = attend_forward(spec, h, memory, keys, keep, attention_weights)
        attentional = attentional_forward(context, h, attentional_kernel)
        output = attentional * dropout_mask[t] if spec.dropout else attentional
        values = [output, attention, *states, cell_saved, context, attentional, query]
        return t + 1, output, states, [a.write(t, v) for a, v in zip(arrays, values, strict=True)]

    arrays = [
        tf.TensorArray(dtype, size=steps, element_shape=shape)
        for shape in _step_shapes(spec, states0, feed0, memory, keys)
    ]
    _, _, _, arrays = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), feed0, list(states0), arrays),
        maximum_iterations=steps,
    )
    return tuple(a.stack() for a in arrays)


def _step_shapes(spec, states0, feed0, memory, keys):
    """Shapes of one step's saved values (TensorArray elements), in `_forward`'s order."""
    batch, units = states0[0].shape
    features = feed0.shape[-1]
    source, memory_features = memory.shape[1], memory.shape[2]
    query_width = {"additive": keys.shape[-1], "general": memory_features, "dot": units}
    return [
        (batch, features),
        (batch, source),
        *[(batch, units)] * spec.state_count,
        (batch, 4 * units),
        (batch, memory_features),
        (batch, features),
        (batch, query_width[spec.attention]),
    ]


# ----------------------------------------------------------------------------- backward loop


def _flat_inner(a, b):
    """Sum over time and batch of a^T b: (T, B, M), (T, B, N) -> (M, N)."""
    return tf.matmul(
        tf.reshape(a, (-1, a.shape[-1])), tf.reshape(b, (-1, b.shape[-1])), transpose_a=True
    )


def _shift_in(first, sequence):
    """Prepend `first` (B, U) to `sequence` (T, B, U), dropping its last step."""
    return tf.concat([first[None], sequence[:-1]], axis=0)


def _cell_backward(spec, d_hn, d_c, saved, h_prev, c_prev, c_new, cell_weights):
    """Derivatives of one cell step: `(d_gates_x (B, kU), d_h_prev, d_c_prev)`."""
    recurrent_t = tf.transpose(cell_weights[1])
    if spec.cell == "gru":
        z, r, hh, r_h = tf.split(saved, 4, axis=-1)
        d_a_h = d_hn * (1.0 - z) * (1.0 - hh * hh)
        d_a_z = d_hn * (h_prev - hh) * z * (1.0 - z)
        d_a_r = d_a_h * r_h * r * (1.0 - r)
        d_gates = tf.concat([d_a_z, d_a_r, d_a_h], axis=-1)
        d_recurrent = tf.concat([d_a_z, d_a_r, d_a_h * r], axis=-1)
        return d_gates, tf.matmul(d_recurrent, recurrent_t) + d_hn * z, None
    i, f, g, o = tf.split(saved, 4, axis=-1)
    tanh_c = tf.tanh(c_new)
    d_cn = d_c + d_hn * o * (1.0 - tanh_c * tanh_c)
    d_gates = tf.concat(
        [
            d_cn * g * i * (1.0 - i),
            d_cn * c_prev * f * (1.0 - f),
            d_cn * i * (1.0 - g * g),
            d_hn * tanh_c * o * (1.0 - o),
        ],
        axis=-1,
    )
    return d_gates, tf.matmul(d_gates, recurrent_t), d_cn * f


def _backward(spec, forward_inputs, saved, d_outputs, d_attention):
    """The reverse loop and the weight gradients after it; returns the gradients of
    `_forward`'s differentiable inputs (x, states0, feed0, memory, keys, *weights)."""
    x, states0, feed0, memory, keys, keep, dropout_mask, weights = forward_inputs
    outputs, attention, *rest = saved
    states_seq = rest[: spec.state_count]
    cell_saved, contexts, attentionals, queries = rest[spec.state_count :]
    cell_weights, attention_weights, attentional_kernel = split_weights(spec, weights)
    steps = tf.shape(x)[0]
    dtype = x.dtype
    memory_features = memory.shape[-1]
    h_seq = states_seq[0]
    h_previous = _shift_in(states0[0], h_seq)
    c_previous = _shift_in(states0[1], states_seq[1]) if spec.cell == "lstm" else None
    attentional_t = tf.transpose(attentional_kernel)  # (F, M + U)
    feed_kernel_t = tf.transpose(cell_weights[0])  # (kU, F)

    def array(width):
        return tf.TensorArray(dtype, size=steps, element_shape=(x.shape[1], width))

    arrays = [array(x.shape[-1]), array(feed0.shape[-1]), array(memory_features)]
    arrays.append(array(keys.shape[-1] if spec.attention == "additive" else memory.shape[1]))
    if spec.attention == "general":
        arrays.append(array(memory_features))
    accumulators = (
        [tf.zeros_like(keys), tf.zeros_like(attention_weights[1])]
        if spec.attention == "additive"
        else []
    )

    def body(k, d_h, d_c, d_feed, accumulators, arrays):
        t = steps - 1 - k
        d_out = d_outputs[t] + d_feed
        if spec.dropout:
            d_out = d_out * dropout_mask[t]
        a = attentionals[t]
        d_pre = d_out * (1.0 - a * a)  # (B, F)
        d_joined = tf.matmul(d_pre, attentional_t)
        d_context, d_h_total = d_joined[:, :memory_features], d_joined[:, memory_features:]
        w = attention[t]
        d_w = tf.linalg.matvec(memory, d_context) + d_attention[t]  # (B, S)
        d_scores = w * (d_w - tf.reduce_sum(w * d_w, axis=-1, keepdims=True))
        d_query, accumulators, attention_written = _attend_backward(
            spec, d_scores, queries[t], memory, keys, attention_weights, accumulators
        )
        d_h_total += d_query + d_h
        written = [d_pre, d_context, *attention_written]
        c_prev = c_previous[t] if c_previous is not None else None
        c_new = states_seq[1][t] if spec.cell == "lstm" else None
        d_gates, d_h_prev, d_c_prev = _cell_backward(
            spec, d_h_total, d_c, cell_saved[t], h_previous[t], c_prev, c_new, cell_weights
        )
        written = [d_gates, *written]
        arrays = [a.write(t, v) for a, v in zip(arrays, written, strict=True)]
        d_c_prev = d_c if d_c_prev is None else d_c_prev
        return k + 1, d_h_prev, d_c_prev, tf.matmul(d_gates, feed_kernel_t), accumulators, arrays

    zeros_state = tf.zeros_like(states0[0])
    _, d_h0, d_c0, d_feed0, accumulators, arrays = tf.while_loop(
        lambda k, *_: k < steps,
        body,
        (tf.constant(0), zeros_state, zeros_state, tf.zeros_like(feed0), accumulators, arrays),
        maximum_iterations=steps,
    )
    d_gates, d_pre, d_contexts, *attention_saved = [a.stack() for a in arrays]
    d_cell = _cell_weight_gradients(spec, d_gates, cell_saved, h_previous, feed0, outputs)
    d_memory, d_keys, d_attention_weights = _attention_gradients(
        spec, attention, d_contexts, attention_saved, accumulators, h_seq, queries, keys
    )
    d_attentional = _flat_inner(tf.concat([contexts, h_seq], axis=-1), d_pre)
    d_states0 = [d_h0, d_c0][: spec.state_count]
    return (
        d_gates,
        *d_states0,
        d_feed0,
        d_memory,
        d_keys,
        *d_cell,
        *d_attention_weights,
        d_attentional,
    )


def _attend_backward(spec, d_scores, query, memory, keys, attention_weights, accumulators):
    """One step's attention derivatives from the scores' `d_scores` (B, S): `(d_h from the
    query (B, U), updated accumulators, values to save for after the loop)`."""
    if spec.attention == "additive":
        query_kernel, score_vector = attention_weights
        hidden = tf.tanh(query[:, None, :] + keys)  # (B, S, A), recomputed
        d_hidden = d_scores[..., None] * score_vector * (1.0 - hidden * hidden)
        accumulators = [
            accumulators[0] + d_hidden,  # d_keys
            accumulators[1] + tf.reduce_sum(d_scores[..., None] * hidden, axis=(0, 1)),
        ]
        d_query = tf.reduce_sum(d_hidden, axis=1)  # (B, A)
        return tf.matmul(d_query, query_kernel, transpose_b=True), accumulators, [d_query]
    d_query = tf.linalg.matvec(memory, d_scores, transpose_a=True)  # (B, M)
    if spec.attention == "dot":
        return d_query, accumulators, [d_scores]
    d_h = tf.matmul(d_query, attention_weights[0], transpose_b=True)
    return d_h, accumulators, [d_scores, d_query]


def _attention_gradients(spec, attention, d_contexts, saved, accumulators, h_seq, queries, keys):
    """After the loop: `(d_memory, d_keys, attention weight gradients)`."""
    d_memory = tf.einsum("tbs,tbm->bsm", attention, d_contexts)
    if spec.attention == "additive":
        d_keys, d_score_vector = accumulators
        return d_memory, d_keys, [_flat_inner(h_seq, saved[0]), d_score_vector]
    d_keys = tf.zeros_like(keys)
    if spec.attention == "dot":
        return d_memory + tf.einsum("tbs,tbu->bsu", saved[0], h_seq), d_keys, []
    d_scores, d_projected = saved
    d_memory += tf.einsum("tbs,tbm->bsm", d_scores, queries)
    gradients = [_flat_inner(h_seq, d_projected)]
    if spec.query_bias:
        gradients.append(tf.reduce_sum(d_projected, axis=(0, 1)))
    return d_memory, d_keys, gradients


def _cell_weight_gradients(spec, d_gates, cell_saved, h_previous, feed0, outputs):
    """Feed kernel, recurrent kernel (and GRU recurrent bias) gradients, after the loop."""
    d_feed_kernel = _flat_inner(_shift_in(feed0, outputs), d_gates)
    if spec.cell == "lstm":
        return [d_feed_kernel, _flat_inner(h_previous, d_gates)]
    units = h_previous.shape[-1]
    r = cell_saved[..., units : 2 * units]
    d_recurrent = tf.concat([d_gates[..., : 2 * units], d_gates[..., 2 * units :] * r], axis=-1)
    return [
        d_feed_kernel,
        _flat_inner(h_previous, d_recurrent),
        tf.reduce_sum(d_recurrent, axis=(0, 1)),
    ]


# ----------------------------------------------------------------------------- entry point


def _round_up(size, multiple=_PAD_TO):
    return (size + multiple - 1) // multiple * multiple


def _pad_axis(tensor, axis, size, value=0):
    padding = [[0, 0]] * len(tensor.shape)
    padding[axis] = [0, size - tf.shape(tensor)[axis]]
    return tf.pad(tensor, padding, constant_values=value)


def attention_decoder_sequence(
    spec: DecoderSpec, x, states, feed, memory, keys, keep, dropout_mask, weights
):
    """The fused decoder over time-major `x` (T, B, kU), with a hand-written gradient.

    Args:
        spec: the static configuration.
        x: the embedding part of the input projection, bias included, (T, B, kU).
        states: the initial states, each (B, U) ([h] or [h, c]).
        feed: the first step's fed attentional vector (B, F).
        memory: encoder outputs (B, S, M). keys: additive attention's projected memory
            (B, S, A); for dot and general pass `memory`.
        keep: bool (B, S), False on source padding.
        dropout_mask: (T, B, F) scaled keep mask of the attentional vector, or None.
        weights: flat list, `split_weights`' order.

    Returns:
        outputs (T, B, F), the attentional vectors fed at each next step (after dropout),
        and attention weights (T, B, S).
    """
    steps, batch, source = tf.shape(x)[0], tf.shape(x)[1], tf.shape(memory)[1]
    padded_steps, padded_batch = _round_up(steps), _round_up(batch)
    padded_source = _round_up(source)
    x = _pad_axis(_pad_axis(x, 0, padded_steps), 1, padded_batch)
    states = [_pad_axis(s, 0, padded_batch) for s in states]
    feed = _pad_axis(feed, 0, padded_batch)
    memory = _pad_axis(_pad_axis(memory, 0, padded_batch), 1, padded_source)
    keys = _pad_axis(_pad_axis(keys, 0, padded_batch), 1, padded_source)
    keep = _pad_axis(_pad_axis(keep, 0, padded_batch, False), 1, padded_source, False)
    if dropout_mask is None:
        dropout_mask = tf.zeros((), x.dtype)
    else:
        dropout_mask = _pad_axis(_pad_axis(dropout_mask, 0, padded_steps), 1, padded_batch)
    outputs, attention = _run(spec, x, states, feed, memory, keys, keep, dropout_mask, weights)
    return outputs[:steps, :batch], attention[:steps, :batch, :source]


def _run(spec, x, states, feed, memory, keys, keep, dropout_mask, weights):
    # bfloat16: TensorFlow's oneDNN products use the CPU's bfloat16 instructions, XLA's do not
    # (see `fast_rnn_kernels._loops_use_xla`).
    xla = x.dtype != tf.bfloat16
    forward = compile_once(lambda *a: _forward(spec, *a), ("decoder_fwd", spec), xla)
    backward = compile_once(lambda *a: _backward_flat(spec, *a), ("decoder_bwd", spec), xla)
    count = spec.state_count

    @tf.custom_gradient
    def run(x, *args):
        states, feed, memory, keys = args[:count], args[count], args[count + 1], args[count + 2]
        weights = args[count + 3 :]
        inputs = [tf.stop_gradient(t) for t in (x, *states, feed, memory, keys, *weights)]
        saved = forward(
            inputs[0],
            inputs[1 : 1 + count],
            inputs[1 + count],
            inputs[2 + count],
            inputs[3 + count],
            keep,
            dropout_mask,
            *inputs[4 + count :],
        )

        def grad(d_outputs, d_attention):
            d_outputs = tf.zeros_like(saved[0]) if d_outputs is None else d_outputs
            d_attention = tf.zeros_like(saved[1]) if d_attention is None else d_attention
            return backward(d_outputs, d_attention, keep, dropout_mask, *inputs, *saved)

        return (saved[0], saved[1]), grad

    return run(x, *states, feed, memory, keys, *weights)


def _backward_flat(spec, d_outputs, d_attention, keep, dropout_mask, *tensors):
    """`_backward` with flat arguments (what a compiled function takes)."""
    count = spec.state_count
    x, states0 = tensors[0], list(tensors[1 : 1 + count])
    feed0, memory, keys = tensors[1 + count : 4 + count]
    weight_count = spec.cell_weight_count + spec.attention_weight_count + 1
    weights = tensors[4 + count : 4 + count + weight_count]
    saved = tensors[4 + count + weight_count :]
    inputs = (x, states0, feed0, memory, keys, keep, dropout_mask, weights)
    return _backward(spec, inputs, saved, d_outputs, d_attention)
