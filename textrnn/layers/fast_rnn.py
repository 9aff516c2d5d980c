"""Fast CPU LSTM / GRU layers: hoisted input projection, hand-written backward, XLA.

`FastLSTM` and `FastGRU` are `keras.layers.LSTM` / `keras.layers.GRU` with a
different inner loop. They own exactly the same variables (`kernel`,
`recurrent_kernel`, `bias`; GRU `reset_after=True` with its 2-row bias) under
the same names, so weights and checkpoints move freely between them and the
stock layers, and `Bidirectional`, masking, `initial_state`, `return_state`,
`stateful` and `go_backwards` behave exactly as Keras's.

Why it is faster on CPU (the loops are in `fast_rnn_kernels`; `bench/train_throughput.py`
measures them):

- the input projection `X @ K + b` is one large product for every step
  (efficient), so the recurrent loop only multiplies `h @ R` per step (the gates
  fused in one product; LSTM layers of 128 units or more: one product per
  gate, see the LSTM section of `fast_rnn_kernels`);
- the backward pass is written by hand (`tf.custom_gradient`): a reverse loop
  doing only the gate derivatives and `dz_t @ R^T` per step, then the weight
  gradients as large products after the loop
  (`dR = H_prev^T dZ`, `dK = X^T dZ`, `dX = dZ K^T`) and one reduction for the
  bias, instead of TensorFlow's per-step automatic gradient;
- forward and backward loops are each compiled with XLA (`jit_compile`), except
  for LSTM layers too wide for the batch halves below (LSTM(362) and wider in
  float32), whose per-gate loops run faster as TensorFlow's own graph, and in
  bfloat16 (`mixed_bfloat16`), where TensorFlow's oneDNN products use the CPU's
  bfloat16 instructions and XLA's do not (`fast_rnn_kernels._loops_use_xla`);
- wide layers (128 units or more) whose recurrent kernel fits a core's cache
  (up to 2 MB: LSTM(362), GRU(418) in float32) run batches of 16 or more as
  two half-batch loops, which TensorFlow's executor runs concurrently, one per
  core (`fast_rnn_kernels._over_batch_halves`, `_halves_pay`).

Masking follows Keras's `backend.rnn` exactly: on a masked step the states are
carried unchanged and the output repeats the previous output (zeros before the
first real step), or is zero with `zero_output_for_mask=True` (what
`Bidirectional` sets when returning sequences).

The fast loop is used when the configuration allows it (tanh / sigmoid, bias,
no recurrent dropout while training, no unroll, float32 / float64 / bfloat16);
anything else falls back to the stock Keras loop, so results never change, only
speed. In bfloat16 it computes what Keras's layer computes under `mixed_bfloat16`
(every product and state in bfloat16), to bfloat16's precision.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from textrnn.layers.fast_rnn_kernels import gru_sequence, lstm_sequence
from textrnn.layers.variables import tf_value
from textrnn.layers.weight_drop import WeightDropMixin

_FAST_DTYPES = ("float32", "float64", "bfloat16")

# ----------------------------------------------------------------------------- layers


class _FastLoopMixin:
    """Shared inner-loop dispatch for `FastLSTM` / `FastGRU`."""

    def fast_path_supported(self, training=False) -> bool:
        """True when the fast loop runs: training, in a configuration it computes exactly.

        Inference (`training=False`: evaluation, prediction, exports, serving)
        keeps Keras's loop: the fast loop is compiled with XLA once per input
        shape, which pays off over thousands of training steps but made every
        new (batch, length) of a request wait 0.5-6 s for a compile.
        """
        cell = self.cell
        return (
            bool(training)
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias
            and not self.unroll
            and not (training and cell.recurrent_dropout)
            and self.compute_dtype in _FAST_DTYPES
            and getattr(cell, "reset_after", True)
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self.fast_path_supported(training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if training and self.dropout:
            dp_mask = self.cell.get_dropout_mask(
                sequences[:, 0, :]
            )  # (B, D), as Keras's cuDNN path
            sequences = sequences * ops.expand_dims(dp_mask, axis=1)
        x = tf.transpose(sequences, (1, 0, 2))  # (T, B, D)
        if mask is not None:
            mask = tf.transpose(tf.cast(mask, tf.bool))  # (T, B)
        if self.go_backwards:
            x = tf.reverse(x, [0])
            if mask is not None:
                mask = tf.reverse(mask, [0])
        cell = self.cell
        weights = [
            tf.cast(tf_value(w), x.dtype) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)
        ]
        states = [tf.cast(s, x.dtype) for s in initial_state]
        outputs, *final_states = self._run_sequence(x, states, mask, *weights)
        last_output = outputs[-1]  # (B, U)
        return last_output, tf.transpose(outputs, (1, 0, 2)), final_states


@keras.saving.register_keras_serializable(package="textrnn")
class FastLSTM(WeightDropMixin, _FastLoopMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` with the fast CPU inner loop (same weights, same results).

    Args:
        weight_drop: DropConnect rate on the recurrent kernel while training
            (`textrnn.layers.weight_drop`); 0 (default) leaves it out.
        **kwargs: exactly `keras.layers.LSTM`'s arguments.

    Example:

    >>> FastLSTM(8, return_sequences=True)(keras.ops.ones((2, 5, 4))).shape
    (2, 5, 8)
    """

    def _run_sequence(self, x, states, mask, kernel, recurrent_kernel, bias):
        outputs, h, c = lstm_sequence(
            x,
            states[0],
            states[1],
            mask,
            kernel,
            recurrent_kernel,
            bias,
            zero_output=self.zero_output_for_mask,
        )
        return outputs, h, c


@keras.saving.register_keras_serializable(package="textrnn")
class FastGRU(WeightDropMixin, _FastLoopMixin, keras.layers.GRU):
    """`keras.layers.GRU` with the fast CPU inner loop (same weights, same results).

    Only `reset_after=True` (the Keras and cuDNN default) takes the fast loop.

    Args:
        weight_drop: DropConnect rate on the recurrent kernel while training
            (`textrnn.layers.weight_drop`); 0 (default) leaves it out.
        **kwargs: exactly `keras.layers.GRU`'s arguments.

    Example:

    >>> FastGRU(8)(keras.ops.ones((2, 5, 4))).shape
    (2, 8)
    """

    def _run_sequence(self, x, states, mask, kernel, recurrent_kernel, bias):
        outputs, h = gru_sequence(
            x,
            states[0],
            mask,
            kernel,
            recurrent_kernel,
            bias,
            zero_output=self.zero_output_for_mask,
        )
        return outputs, h


# Keras's weights files (`save_weights`, `saving_lib`) name the layers of a list
# after their class ("lstm", "gru"), so a unidirectional stack of FastLSTM
# layers would be stored under "fast_lstm" and refuse to load into
# keras.layers.LSTM (a model trained on a GPU, evaluated on a CPU) and back.
# Under Keras's class names the files are the same whichever layers wrote
# them. Serialization is unaffected: it goes by the registered name
# ("textrnn>FastLSTM").
FastLSTM.__name__ = "LSTM"
FastGRU.__name__ = "GRU"
