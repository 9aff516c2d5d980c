"""The fast CPU LSTM / GRU loops behind `textrnn.layers.fast_rnn`: documented
`tf.while_loop` kernels (forward, hand-written backward, XLA, batch halves).

`lstm_sequence` / `gru_sequence` take time-major inputs `(T, B, D)` and the
layer's own weights in Keras's layout and return `(outputs, *final_states)`;
why each trick is here is told in `textrnn.layers.fast_rnn`'s docstring.
"""

from __future__ import annotations

import tensorflow as tf

# ----------------------------------------------------------------------------- helpers


def _flat_matmul(x, w):
    """(T, B, D) @ (D, N) -> (T, B, N) as one large product."""
    shape = tf.shape(x)
    out = tf.matmul(tf.reshape(x, (-1, x.shape[-1])), w)
    out = tf.reshape(out, tf.concat([shape[:2], [w.shape[-1]]], 0))
    out.set_shape(x.shape[:2] + w.shape[-1:])
    return out


def _flat_inner(a, b):
    """Sum over time and batch of a^T b: (T, B, M), (T, B, N) -> (M, N)."""
    return tf.matmul(
        tf.reshape(a, (-1, a.shape[-1])), tf.reshape(b, (-1, b.shape[-1])), transpose_a=True
    )


def _shift_in(first, sequence):
    """Prepend `first` (B, U) to `sequence` (T, B, U), dropping its last step: previous states."""
    return tf.concat([first[None], sequence[:-1]], axis=0)


# ----------------------------------------------------------------------------- LSTM
#
# Two layouts, the same arithmetic:
#
# - per gate (`per_gate=True`, wide layers, see `_wide`): the four gates are
#   four (B, U) products against column blocks of the recurrent kernel and four
#   (T, B, U) projected inputs. XLA:CPU emits scalar code for a fusion that
#   reads several column slices of a dynamically indexed (B, 4U) tensor;
#   per-gate operands keep the gate math vectorized, and the per-gate
#   weight-gradient products after the backward loop (`H^T dZ_k`, `X^T dZ_k`,
#   `dZ_k K_k^T`) ran 30-40% faster than the same products on the concatenated
#   (T*B, 4U) block (issue 7: 2 x LSTM(256), batch 64, 100 steps, 2-core Zen 5).
# - fused (`per_gate=False`): one (B, 4U) product per step and one (T*B, 4U)
#   block for the weight gradients. Fewer operations, so XLA compiles it about
#   30% faster (0.75-0.8 s against 1.1 s per new (T, B) shape for LSTM(64)):
#   what counts for narrow layers on variable-length batches, where each new
#   shape is compiled and the per-step products are too small to gain.


def _lstm_forward(x, h0, c0, mask, kernel, recurrent_kernel, bias, zero_output, per_gate):
    """Time-major LSTM. x (T, B, D); mask (T, B, 1) bool or None.

    Returns outputs (T, B, U), final h, final c and what backward needs: the
    activated gates i, f, g, o (per gate: a list of four (T, B, U); fused: a
    list of one (T, B, 4U)) and the states H, C (T, B, U).
    """
    steps = tf.shape(x)[0]
    dtype = x.dtype
    if per_gate:
        recurrents = tf.split(recurrent_kernel, 4, axis=1)  # 4 x (U, U)
        projected = [
            _flat_matmul(x, k) + b
            for k, b in zip(tf.split(kernel, 4, axis=1), tf.split(bias, 4), strict=True)
        ]  # 4 x (T, B, U)
    else:
        projected = _flat_matmul(x, kernel) + bias  # (T, B, 4U)

    def array(width=None):
        shape = h0.shape if width is None else h0.shape[:1] + (width,)
        return tf.TensorArray(dtype, size=steps, element_shape=shape)

    def body(t, h, c, previous_output, gate_tas, h_ta, c_ta, out_ta):
        if per_gate:
            z = [projected[k][t] + tf.matmul(h, recurrents[k]) for k in range(4)]
        else:
            z = tf.split(projected[t] + tf.matmul(h, recurrent_kernel), 4, axis=-1)
        i, f, g, o = tf.sigmoid(z[0]), tf.sigmoid(z[1]), tf.tanh(z[2]), tf.sigmoid(z[3])
        c_new = f * c + i * g
        h_new = o * tf.tanh(c_new)
        if mask is None:
            output = h_new
        else:
            m = mask[t]  # (B, 1)
            h_new = tf.where(m, h_new, h)
            c_new = tf.where(m, c_new, c)
            output = tf.where(m, h_new, tf.zeros_like(h_new) if zero_output else previous_output)
        if per_gate:
            gate_tas = [ta.write(t, v) for ta, v in zip(gate_tas, (i, f, g, o), strict=True)]
        else:
            gate_tas = [gate_tas[0].write(t, tf.concat([i, f, g, o], axis=-1))]
        if mask is not None:
            out_ta = out_ta.write(t, output)
        return (
            t + 1,
            h_new,
            c_new,
            output,
            gate_tas,
            h_ta.write(t, h_new),
            c_ta.write(t, c_new),
            out_ta,
        )

    _, h, c, _, gate_tas, h_ta, c_ta, out_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (
            tf.constant(0),
            h0,
            c0,
            tf.zeros_like(h0),
            [array() for _ in range(4)] if per_gate else [array(4 * h0.shape[-1])],
            array(),
            array(),
            array(),
        ),
        maximum_iterations=steps,
    )
    states_h = h_ta.stack()
    outputs = (
        states_h if mask is None else out_ta.stack()
    )  # without a mask the outputs are the h states
    return outputs, h, c, [ta.stack() for ta in gate_tas], states_h, c_ta.stack()


def _lstm_backward(
    x,
    h0,
    c0,
    mask,
    kernel,
    recurrent_kernel,
    gates,
    states_h,
    states_c,
    d_outputs,
    d_h,
    d_c,
    zero_output,
    per_gate,
):
    steps = tf.shape(x)[0]
    dtype = x.dtype
    c_previous = _shift_in(c0, states_c)  # (T, B, U)
    if per_gate:
        recurrents_t = [tf.transpose(r) for r in tf.split(recurrent_kernel, 4, axis=1)]
        dz_tas = [tf.TensorArray(dtype, size=steps, element_shape=h0.shape) for _ in range(4)]
    else:
        recurrent_t = tf.transpose(recurrent_kernel)  # (4U, U)
        dz_tas = [tf.TensorArray(dtype, size=steps, element_shape=gates[0].shape[1:])]

    def body(k, d_h, d_c, d_carry, dz_tas):
        t = steps - 1 - k
        if per_gate:
            i, f, g, o = [gate[t] for gate in gates]
        else:
            i, f, g, o = tf.split(gates[0][t], 4, axis=-1)
        c_prev = c_previous[t]
        c_new = f * c_prev + i * g  # recomputed: the stored state may be the carried one
        tanh_c = tf.tanh(c_new)
        d_out = d_outputs[t]
        if mask is None:
            d_hn = d_h + d_out
            d_cn = d_c
        else:
            m = mask[t]
            zero = tf.zeros_like(d_h)
            if not zero_output:
                d_out = d_out + d_carry
                d_carry = tf.where(m, zero, d_out)
            d_hn = tf.where(m, d_h + d_out, zero)
            d_cn = tf.where(m, d_c, zero)
            d_h_pass = tf.where(m, zero, d_h)
            d_c_pass = tf.where(m, zero, d_c)
        d_cn = d_cn + d_hn * o * (1.0 - tanh_c * tanh_c)
        dz = [
            d_cn * g * i * (1.0 - i),
            d_cn * c_prev * f * (1.0 - f),
            d_cn * i * (1.0 - g * g),
            d_hn * tanh_c * o * (1.0 - o),
        ]
        if per_gate:
            d_h_prev = tf.add_n([tf.matmul(d, r) for d, r in zip(dz, recurrents_t, strict=True)])
        else:
            dz = [tf.concat(dz, axis=-1)]  # (B, 4U)
            d_h_prev = tf.matmul(dz[0], recurrent_t)
        d_c_prev = d_cn * f
        if mask is not None:
            d_h_prev += d_h_pass
            d_c_prev += d_c_pass
        dz_tas = [ta.write(t, d) for ta, d in zip(dz_tas, dz, strict=True)]
        return k + 1, d_h_prev, d_c_prev, d_carry, dz_tas

    _, d_h0, d_c0, _, dz_tas = tf.while_loop(
        lambda k, *_: k < steps,
        body,
        (tf.constant(0), d_h, d_c, tf.zeros_like(d_h), dz_tas),
        maximum_iterations=steps,
    )
    dz = [ta.stack() for ta in dz_tas]  # 4 x (T, B, U) or 1 x (T, B, 4U)
    h_previous = _shift_in(h0, states_h)
    if not per_gate:
        dz = dz[0]
        d_recurrent = _flat_inner(h_previous, dz)  # (U, 4U)
        d_kernel = _flat_inner(x, dz)  # (D, 4U)
        d_bias = tf.reduce_sum(dz, axis=(0, 1))
        d_x = _flat_matmul(dz, tf.transpose(kernel))  # (T, B, D)
        return d_x, d_h0, d_c0, d_kernel, d_recurrent, d_bias
    # Per-gate products: faster than on the concatenated (T*B, 4U) block, see above.
    d_recurrent = tf.concat([_flat_inner(h_previous, d) for d in dz], axis=1)  # (U, 4U)
    d_kernel = tf.concat([_flat_inner(x, d) for d in dz], axis=1)  # (D, 4U)
    d_bias = tf.concat([tf.reduce_sum(d, axis=(0, 1)) for d in dz], axis=0)
    d_x = tf.add_n(
        [
            _flat_matmul(d, tf.transpose(k))
            for d, k in zip(dz, tf.split(kernel, 4, axis=1), strict=True)
        ]
    )  # (T, B, D)
    return d_x, d_h0, d_c0, d_kernel, d_recurrent, d_bias


# ----------------------------------------------------------------------------- GRU (reset_after)


def _gru_forward(x, h0, mask, kernel, recurrent_kernel, bias, zero_output):
    """Time-major GRU with reset_after=True; bias (2, 3U): input and recurrent rows."""
    steps = tf.shape(x)[0]
    units = recurrent_kernel.shape[0]
    dtype = x.dtype
    projected = _flat_matmul(x, kernel) + bias[0]  # (T, B, 3U)
    recurrent_bias = bias[1]
    saved_ta = tf.TensorArray(dtype, size=steps, element_shape=h0.shape[:1] + (4 * units,))
    h_ta = tf.TensorArray(dtype, size=steps, element_shape=h0.shape)
    out_ta = tf.TensorArray(dtype, size=steps, element_shape=h0.shape)

    def body(t, h, previous_output, saved_ta, h_ta, out_ta):
        inner = tf.matmul(h, recurrent_kernel) + recurrent_bias  # (B, 3U)
        x_z, x_r, x_h = tf.split(projected[t], 3, axis=-1)
        r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
        z = tf.sigmoid(x_z + r_z)
        r = tf.sigmoid(x_r + r_r)
        hh = tf.tanh(x_h + r * r_h)
        h_new = z * h + (1.0 - z) * hh
        if mask is None:
            output = h_new
        else:
            m = mask[t]
            h_new = tf.where(m, h_new, h)
            output = tf.where(m, h_new, tf.zeros_like(h_new) if zero_output else previous_output)
        saved_ta = saved_ta.write(t, tf.concat([z, r, hh, r_h], axis=-1))
        if mask is not None:
            out_ta = out_ta.write(t, output)
        return t + 1, h_new, output, saved_ta, h_ta.write(t, h_new), out_ta

    _, h, _, saved_ta, h_ta, out_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), h0, tf.zeros_like(h0), saved_ta, h_ta, out_ta),
        maximum_iterations=steps,
    )
    states_h = h_ta.stack()
    outputs = states_h if mask is None else out_ta.stack()
    return outputs, h, saved_ta.stack(), states_h


def _gru_backward(
    x, h0, mask, kernel, recurrent_kernel, saved, states_h, d_outputs, d_h, zero_output
):
    steps = tf.shape(x)[0]
    dtype = x.dtype
    units = recurrent_kernel.shape[0]
    h_previous = _shift_in(h0, states_h)  # (T, B, U)
    recurrent_t = tf.transpose(recurrent_kernel)  # (3U, U)
    dgx_ta = tf.TensorArray(dtype, size=steps, element_shape=saved.shape[1:2] + (3 * units,))

    def body(k, d_h, d_carry, dgx_ta):
        t = steps - 1 - k
        z, r, hh, r_h = tf.split(saved[t], 4, axis=-1)
        h_prev = h_previous[t]
        d_out = d_outputs[t]
        if mask is None:
            d_hn = d_h + d_out
        else:
            m = mask[t]
            zero = tf.zeros_like(d_h)
            if not zero_output:
                d_out = d_out + d_carry
                d_carry = tf.where(m, zero, d_out)
            d_hn = tf.where(m, d_h + d_out, zero)
            d_h_pass = tf.where(m, zero, d_h)
        d_a_h = d_hn * (1.0 - z) * (1.0 - hh * hh)
        d_a_z = d_hn * (h_prev - hh) * z * (1.0 - z)
        d_a_r = d_a_h * r_h * r * (1.0 - r)
        d_gx = tf.concat([d_a_z, d_a_r, d_a_h], axis=-1)  # (B, 3U)
        d_gr = tf.concat([d_a_z, d_a_r, d_a_h * r], axis=-1)
        d_h_prev = tf.matmul(d_gr, recurrent_t) + d_hn * z
        if mask is not None:
            d_h_prev += d_h_pass
        return k + 1, d_h_prev, d_carry, dgx_ta.write(t, d_gx)

    _, d_h0, _, dgx_ta = tf.while_loop(
        lambda k, *_: k < steps,
        body,
        (tf.constant(0), d_h, tf.zeros_like(d_h), dgx_ta),
        maximum_iterations=steps,
    )
    d_gx = dgx_ta.stack()  # (T, B, 3U)
    r = saved[..., units : 2 * units]
    d_gr = tf.concat([d_gx[..., : 2 * units], d_gx[..., 2 * units :] * r], axis=-1)
    d_recurrent = _flat_inner(h_previous, d_gr)  # (U, 3U)
    d_kernel = _flat_inner(x, d_gx)  # (D, 3U)
    d_bias = tf.stack([tf.reduce_sum(d_gx, axis=(0, 1)), tf.reduce_sum(d_gr, axis=(0, 1))])
    d_x = _flat_matmul(d_gx, tf.transpose(kernel))
    return d_x, d_h0, d_kernel, d_recurrent, d_bias


# ------------------------------------------------------------------ compiled entry points

_compiled: dict = {}


def compile_once(function, key, xla=True):
    """`function` as a `tf.function` (compiled with XLA unless `xla` is False), one per key."""
    key = (*key, xla)
    if key not in _compiled:
        _compiled[key] = tf.function(function, jit_compile=xla, autograph=False)
    return _compiled[key]


def _loops_use_xla(cell: str, recurrent_kernel) -> bool:
    """Whether a layer's forward and backward loops are compiled with XLA.

    bfloat16 (`mixed_bfloat16` training): never. XLA's CPU backend runs
    bfloat16 products without the CPU's bfloat16 instructions (AMX,
    AVX512-BF16), where TensorFlow's oneDNN MatMul uses them. Training step,
    2 x 650 / 2 x 256 language models (issue 21, 2-core Xeon with AMX):
    bfloat16 loops with XLA ran 0.90-0.53x float32, without XLA 1.17-1.37x.

    float32 LSTM: XLA except for wide layers run as one loop, where
    TensorFlow's own loop is faster: the four per-gate (B, U) x (U, U)
    products of a step are four oneDNN MatMul ops that TensorFlow's executor
    runs side by side on the two cores, where XLA runs them one after another,
    each split across the cores. Forward plus backward of one layer (`tf.function`
    over the same loops, 7 alternating rounds): LSTM(650) at batch 20, 35
    steps, 83.9 against 72.6 ms (1.15x); LSTM(512) at batch 64 1.12x;
    LSTM(384) at batch 32, 100 steps, 1.21x. Where the halves run (LSTM(256),
    batch 64) XLA stays ahead (0.96x without it), and so does the fused GRU
    loop (GRU(650), batch 20: 0.91x), so both keep XLA. No XLA also means no
    compile for each new (T, B).
    """
    if recurrent_kernel.dtype == tf.bfloat16:
        return False
    if cell == "gru":
        return True
    return not _wide(recurrent_kernel.shape[0]) or _halves_pay(recurrent_kernel)


# Two halves of the batch, run concurrently. One recurrence on this 2-core CPU
# leaves a core idle most of each step: the per-step products are small
# ((B, U) x (U, U)) and the threads of one product meet after every step. The
# two halves of the batch are independent recurrences; run as two compiled
# loops (two ops in the graph), TensorFlow's executor runs them at the same time,
# one per core (issue 7: the 100-step LSTM(256) forward loop at batch 64 took
# 13 ms as two half-batch loops against 25 ms as one loop). Weight gradients of
# the halves are summed by the tape. In eager mode the halves run one after the
# other, with the same results.

_MIN_HALF_ROWS = 8  # smaller halves are not worth a second loop
_MIN_WIDE_UNITS = 128  # narrower layers: one loop, fused LSTM layout (see `_wide`)
# Larger recurrent kernels: one loop (see `_halves_pay`).
_MAX_HALVES_KERNEL_BYTES = 2 * 1024 * 1024


def _wide(units) -> bool:
    """Layers this wide take the per-gate LSTM layout and the two half-batch loops.

    Narrow layers keep one loop and the fused layout: their per-step products
    are too small to gain from either, and both cost compile time (per-gate
    ops; a second shape when the halves are uneven), which dominates training
    on variable-length batches (issue 2's sentiment benchmark, LSTM(64),
    compiles a loop for each new (T, B)). Measured: units 256 gains, units 64
    loses; 128 is the boundary chosen between the two, not measured.
    """
    return units >= _MIN_WIDE_UNITS


def _halves_pay(recurrent_kernel) -> bool:
    """Two half-batch loops pay for wide layers whose recurrent kernel fits a core's cache.

    Each half's loop reads the whole recurrent kernel at every step, so two
    halves read it twice, where one loop's product splits its columns between
    the cores. With a kernel of about a core's L2 cache (LSTM(256): 1 MB) the
    halves won (2 x LSTM(256), batch 64: 12.6k against 10.2k tokens/s); at
    2.4 MB they tied (LSTM(384)) and beyond they lost (LSTM(512), batch 64:
    2.9k against 4.0k; LSTM(650) and GRU(650), batch 20: 530 against 816 and
    649 against 896), issue 7, 2-core EPYC.
    """
    units, columns = recurrent_kernel.shape
    return (
        _wide(units) and units * columns * recurrent_kernel.dtype.size <= _MAX_HALVES_KERNEL_BYTES
    )


def _over_batch_halves(run, x, states, mask, recurrent_kernel):
    """`run(x, states, mask)` -> (outputs, *final_states), on two batch halves when it pays."""
    batch = states[0].shape[0]
    if not _halves_pay(recurrent_kernel) or (batch is not None and batch < 2 * _MIN_HALF_ROWS):
        return run(x, states, mask)
    if batch is None:  # traced with an unknown batch: split at run time
        batch = tf.shape(states[0])[0]
        sizes = tf.stack([batch - batch // 2, batch // 2])
    else:
        sizes = [batch - batch // 2, batch // 2]
    xs = tf.split(x, sizes, axis=1, num=2)
    parts = [tf.split(s, sizes, axis=0, num=2) for s in states]
    masks = [None, None] if mask is None else tf.split(mask, sizes, axis=1, num=2)
    halves = [run(xs[j], [p[j] for p in parts], masks[j]) for j in range(2)]
    outputs = tf.concat([half[0] for half in halves], axis=1)
    finals = [tf.concat(pair, axis=0) for pair in zip(*[half[1:] for half in halves], strict=True)]
    return (outputs, *finals)


def lstm_sequence(x, h0, c0, mask, kernel, recurrent_kernel, bias, zero_output=False):
    """Run an LSTM over time-major `x` (T, B, D) with a hand-written gradient.

    Args:
        x: (T, B, D) inputs, already in iteration order.
        h0, c0: (B, U) initial states.
        mask: (T, B) bool or None.
        kernel, recurrent_kernel, bias: Keras layout, gates i, f, c, o.
        zero_output: output zeros (not the previous output) on masked steps.

    Returns:
        outputs (T, B, U), final h, final c.
    """
    return _over_batch_halves(
        lambda x, states, mask: _lstm_run(
            x, *states, mask, kernel, recurrent_kernel, bias, zero_output
        ),
        x,
        [h0, c0],
        mask,
        recurrent_kernel,
    )


def _lstm_run(x, h0, c0, mask, kernel, recurrent_kernel, bias, zero_output):
    has_mask = mask is not None
    per_gate = _wide(recurrent_kernel.shape[0])
    xla = _loops_use_xla("lstm", recurrent_kernel)
    forward = compile_once(
        lambda *a: _lstm_forward(*a[:3], a[3] if has_mask else None, *a[4:], zero_output, per_gate),
        ("lstm_fwd", has_mask, zero_output, per_gate),
        xla,
    )
    backward = compile_once(
        lambda *a: _lstm_backward(
            *a[:3], a[3] if has_mask else None, *a[4:], zero_output, per_gate
        ),
        ("lstm_bwd", has_mask, zero_output, per_gate),
        xla,
    )
    mask_arg = mask[..., None] if has_mask else tf.zeros((), tf.bool)

    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent_kernel, bias):
        # stop_gradient: the tape must not trace through the compiled loop (its
        # TensorLists cannot leave XLA); `grad` below is the gradient.
        x, h0, c0, kernel, recurrent_kernel, bias = _no_tape(
            x, h0, c0, kernel, recurrent_kernel, bias
        )
        outputs, h, c, gates, states_h, states_c = forward(
            x, h0, c0, mask_arg, kernel, recurrent_kernel, bias
        )

        def grad(d_outputs, d_h, d_c):
            d_outputs = _zeros_if_none(d_outputs, outputs)
            d_h, d_c = _zeros_if_none(d_h, h), _zeros_if_none(d_c, c)
            return backward(
                x,
                h0,
                c0,
                mask_arg,
                kernel,
                recurrent_kernel,
                gates,
                states_h,
                states_c,
                d_outputs,
                d_h,
                d_c,
            )

        return (outputs, h, c), grad

    return run(x, h0, c0, kernel, recurrent_kernel, bias)


def gru_sequence(x, h0, mask, kernel, recurrent_kernel, bias, zero_output=False):
    """Run a GRU (reset_after=True) over time-major `x` (T, B, D); see `lstm_sequence`.

    Returns:
        outputs (T, B, U), final h.
    """
    return _over_batch_halves(
        lambda x, states, mask: _gru_run(
            x, *states, mask, kernel, recurrent_kernel, bias, zero_output
        ),
        x,
        [h0],
        mask,
        recurrent_kernel,
    )


def _gru_run(x, h0, mask, kernel, recurrent_kernel, bias, zero_output):
    has_mask = mask is not None
    xla = _loops_use_xla("gru", recurrent_kernel)
    forward = compile_once(
        lambda *a: _gru_forward(*a[:2], a[2] if has_mask else None, *a[3:], zero_output),
        ("gru_fwd", has_mask, zero_output),
        xla,
    )
    backward = compile_once(
        lambda *a: _gru_backward(*a[:2], a[2] if has_mask else None, *a[3:], zero_output),
        ("gru_bwd", has_mask, zero_output),
        xla,
    )
    mask_arg = mask[..., None] if has_mask else tf.zeros((), tf.bool)

    @tf.custom_gradient
    def run(x, h0, kernel, recurrent_kernel, bias):
        x, h0, kernel, recurrent_kernel, bias = _no_tape(x, h0, kernel, recurrent_kernel, bias)
        outputs, h, saved, states_h = forward(x, h0, mask_arg, kernel, recurrent_kernel, bias)

        def grad(d_outputs, d_h):
            d_outputs = _zeros_if_none(d_outputs, outputs)
            d_h = _zeros_if_none(d_h, h)
            return backward(
                x, h0, mask_arg, kernel, recurrent_kernel, saved, states_h, d_outputs, d_h
            )

        return (outputs, h), grad

    return run(x, h0, kernel, recurrent_kernel, bias)


def _no_tape(*tensors):
    return [tf.stop_gradient(t) for t in tensors]


def _zeros_if_none(gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient
