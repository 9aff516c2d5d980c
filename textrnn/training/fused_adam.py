"""Adam and AdamW whose update is TensorFlow's fused kernel: one pass over each variable.

`keras.optimizers.Adam.update_step` is written in Keras ops: for each variable
about a dozen element-wise TensorFlow ops (subtract, multiply, square, sqrt,
divide, three assigns), each a full pass over the variable's memory. For the
language model's 10,000-word embedding and output layer that is most of the
optimizer's time (issue 21: at 2 x LSTM(650), batch 20, sequence 35, the Adam
ops took about a sixth of the CPU time of a training step: ~100 of ~620 thread-ms).
`tf.raw_ops.ResourceApplyAdam` computes the same formulas in one kernel, in
place, in one pass:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1)
    v += (g^2 - v) * (1 - beta_2)
    var -= m * alpha / (sqrt(v) + epsilon)

which is Keras's `Adam.update_step` term for term, so the two agree to float
rounding (tested) and keep the same slot variables (`momentums`,
`velocities`): checkpoints and backups move freely between them.
Everything else (learning-rate schedules, clipping, EMA, AdamW's weight decay,
gradient accumulation, `tf.distribute`) is Keras's, unchanged. `amsgrad` and
variables that are not TensorFlow resource variables take Keras's update.

Sparse gradients (`tf.IndexedSlices`: an embedding's looked-up rows) keep
Keras's numbers too. Keras squares each looked-up row's gradient separately
(`ops.square` maps over the slices), so a word seen k times in a batch adds
the sum of its k squared gradients to `v`, not the square of their sum, which
the dense kernel would add. Before the kernel runs, `v` gets the difference
on just those rows, scaled so that the kernel's own `v` update lands on
Keras's value (`_keras_sparse_velocity`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from textrnn.layers.variables import tf_value


def _keras_sparse_velocity(v, gradient: tf.IndexedSlices, beta_2):
    """Prepare `v` for the dense kernel so that it ends at Keras's value; the dense gradient.

    The kernel sets `v <- beta_2 v + (1 - beta_2) g^2` with `g` the summed
    (dense) gradient; Keras's sparse update sets `v <- beta_2 v + (1 - beta_2) q`
    with `q` the per-row sum of squared slices. Adding
    `(1 - beta_2) / beta_2 * (q - g^2)` to `v` first makes the two agree. It is
    zero except on rows looked up more than once, and is added to the unique
    looked-up rows only.
    """
    rows, positions = tf.unique(gradient.indices)
    values = tf.cast(gradient.values, v.dtype)
    count = tf.shape(rows)[0]
    summed = tf.math.unsorted_segment_sum(values, positions, count)
    squares = tf.math.unsorted_segment_sum(tf.square(values), positions, count)
    correction = (squares - tf.square(summed)) * ((1.0 - beta_2) / beta_2)
    with tf.control_dependencies(
        [tf.raw_ops.ResourceScatterAdd(resource=v.handle, indices=rows, updates=correction)]
    ):
        # The dense gradient (Adam's moments decay on every row), from the rows summed above.
        return tf.scatter_nd(rows[:, tf.newaxis], summed, tf.shape(v, out_type=rows.dtype))


class _FusedAdamUpdate:
    """`update_step` of Adam-family optimizers through `ResourceApplyAdam`."""

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        m = tf_value(self._momentums[index])
        v = tf_value(self._velocities[index])
        target = tf_value(variable)
        if self.amsgrad or not all(hasattr(x, "handle") for x in (target, m, v)):
            return super().update_step(gradient, variable, learning_rate)
        dtype = target.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = _keras_sparse_velocity(v, gradient, beta_2)
        return tf.raw_ops.ResourceApplyAdam(
            var=target.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
        )


@keras.saving.register_keras_serializable(package="textrnn")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the update in one fused TensorFlow kernel.

    Example:

    >>> FusedAdam(learning_rate=1e-3).get_config()["learning_rate"]
    0.001
    """


@keras.saving.register_keras_serializable(package="textrnn")
class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with Adam's update fused; the decoupled decay is Keras's."""
