"""Reading a whole long document: ULMFiT's BPT3C (Howard & Ruder 2018, section 3.3).

`ChunkedRNNStack` is an `RNNStack` (same layers, variables and weight files,
found by `get_layer("rnn_stack")` for `--init-from` and the layer groups of
gradual unfreezing) that reads its input in chunks of `chunk_length` steps,
each chunk starting from the states the previous one ended with, and pools
(final state, masked max or mean) over every chunk. Gradients flow through the
last `bptt_chunks` chunks of each document only (0: through all of them):
truncated back-propagation through time across chunks, so a long document costs
the memory and backward pass of `bptt_chunks` chunks.

Unidirectional stacks only: a backward direction would need the end of the
document first. Per row, the chunks that hold no token are moved to the front
(states stay zero through them), so every document's last chunks are the
batch's last chunks: the chunks before them run in one loop whose results are
cut from the gradient, the rest in a second loop that keeps it. Unchunked and
chunked stacks give the same outputs, and with `bptt_chunks = 0` the same
gradients (`tests/sentiment/test_chunked.py`).

Masks follow Keras's recurrent layers: on a padded step the states are carried
unchanged, so a chunk of padding leaves them as they were. Dropout between
layers and weight drop draw new masks in each chunk. The training step is not
compiled whole with XLA (`training.jit_compile` is not used).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from textrnn.layers.pooling import MaskedPooling
from textrnn.layers.rnn_stack import RNNStack

POOLINGS = ("final", "max", "mean")


@keras.saving.register_keras_serializable(package="textrnn")
class ChunkedRNNStack(RNNStack):
    """An `RNNStack` over chunks of a long sequence, pooled to one vector per row.

    Args:
        chunk_length: steps per chunk.
        bptt_chunks: gradients flow through each row's last `bptt_chunks`
            chunks (0: all).
        pooling: "final" (the top layer's last state), "max" or "mean" over
            every real step.
        **kwargs: `RNNStack`'s arguments (unidirectional; `return_sequences`
            and `return_state` are set here).

    Call arguments:
        inputs: `(batch, time, features)`, any time.
        mask: optional boolean `(batch, time)`, padding on the right.

    Returns `(batch, units)`.

    Example:

    >>> stack = ChunkedRNNStack(chunk_length=4, pooling="max", units=8)
    >>> stack(keras.ops.ones((2, 10, 3))).shape
    (2, 8)
    """

    def __init__(self, chunk_length: int, bptt_chunks: int = 0, pooling: str = "max", **kwargs):
        kwargs.pop("return_sequences", None)
        kwargs.pop("return_state", None)
        super().__init__(return_sequences=True, return_state=True, **kwargs)
        if self.bidirectional:
            raise ValueError("ChunkedRNNStack needs a unidirectional stack")
        if chunk_length < 1 or bptt_chunks < 0:
            raise ValueError(
                f"chunk_length must be >= 1 and bptt_chunks >= 0, got {chunk_length}, {bptt_chunks}"
            )
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.chunk_length = chunk_length
        self.bptt_chunks = bptt_chunks
        self.pooling = pooling
        self.pool = None if pooling == "final" else MaskedPooling(pooling, name="pool")
        # XLA cannot compile a whole training step around the chunk loop (the recurrent
        # layers' own compiled loops inside it keep gradient accumulators XLA rejects); the
        # fast CPU loop inside each chunk is still compiled.
        self.supports_jit = False

    def call(self, inputs, mask=None, training=None, initial_state=None):
        if initial_state is not None:
            raise ValueError("ChunkedRNNStack starts every document from zero states")
        chunks, chunk_masks, real = self._chunks(inputs, mask)  # (n, B, c, F), (n, B, c)
        count = tf.shape(chunks)[0]
        states = [
            tf.zeros([tf.shape(inputs)[0], self.units], inputs.dtype)
            for _ in range(self.states_per_layer * self.num_layers)
        ]
        first_with_gradient = (
            tf.maximum(count - self.bptt_chunks, 0) if self.bptt_chunks else tf.constant(0)
        )
        early, states = self._run_chunks(
            chunks, chunk_masks, states, 0, first_with_gradient, training
        )
        early = tf.stop_gradient(early)
        states = [tf.stop_gradient(state) for state in states]
        late, states = self._run_chunks(
            chunks, chunk_masks, states, first_with_gradient, count, training
        )
        if self.pooling == "final":
            return states[(self.num_layers - 1) * self.states_per_layer]  # top layer's h
        outputs = tf.concat([early, late], axis=0)  # (n, B, c, U)
        outputs = tf.transpose(outputs, (1, 0, 2, 3))  # (B, n, c, U)
        batch = tf.shape(outputs)[0]
        outputs = tf.reshape(outputs, [batch, -1, self.output_features])  # (B, n * c, U)
        return self.pool(outputs, mask=tf.reshape(real, [batch, -1]))

    def _chunks(self, inputs, mask):
        """(chunks, their masks, the mask in (batch, chunks, chunk) order) of right-aligned rows.

        Each row's empty chunks move to the front, so its last real chunk is the batch's last.
        """
        length = self.chunk_length
        batch, time = tf.shape(inputs)[0], tf.shape(inputs)[1]
        if mask is None:
            mask = tf.ones([batch, time], tf.bool)
        mask = tf.cast(mask, tf.bool)
        count = tf.maximum((time + length - 1) // length, 1)
        padded = count * length
        steps = tf.range(padded)  # (P,)
        real_end = tf.reduce_max(tf.where(mask, tf.range(time)[tf.newaxis, :] + 1, 0), axis=1)
        shift = (count - (real_end + length - 1) // length) * length  # (B,) empty chunks x length
        source = steps[tf.newaxis, :] - shift[:, tf.newaxis]  # (B, P): where each step comes from
        inside = tf.logical_and(source >= 0, source < time)
        source = tf.clip_by_value(source, 0, tf.maximum(time - 1, 0))
        values = tf.gather(inputs, source, batch_dims=1)  # (B, P, F)
        values = tf.where(inside[..., tf.newaxis], values, tf.zeros_like(values))
        real = tf.logical_and(inside, tf.gather(mask, source, batch_dims=1))  # (B, P)
        features = inputs.shape[-1]
        chunks = tf.reshape(values, [batch, count, length, features])
        chunk_masks = tf.reshape(real, [batch, count, length])
        return (
            tf.transpose(chunks, (1, 0, 2, 3)),
            tf.transpose(chunk_masks, (1, 0, 2)),
            real,
        )

    def _run_chunks(self, chunks, chunk_masks, states, start, stop, training=None):
        """Chunks [start, stop) in a `tf.while_loop` carrying the states: (outputs, states)."""
        size = tf.maximum(stop - start, 0)
        outputs = tf.TensorArray(
            chunks.dtype,
            size=size,
            # The batch size when it is static (a LiteRT export lowers only fully known shapes).
            element_shape=tf.TensorShape(
                [chunks.shape[1], self.chunk_length, self.output_features]
            ),
        )

        def step(index, states, outputs):
            result = RNNStack.call(
                self,
                chunks[index],
                mask=chunk_masks[index],
                training=training,
                initial_state=list(states),
            )
            new_states = list(result[1:])
            for state, new_state in zip(states, new_states, strict=True):
                # A layer may return a less specific shape (batch None) than the states came
                # in with; the loop needs the same one every iteration.
                new_state.set_shape(state.shape)
            return index + 1, new_states, outputs.write(index - start, result[0])

        _, states, outputs = tf.while_loop(
            lambda index, *_: index < stop, step, (tf.convert_to_tensor(start), states, outputs)
        )
        shape = [size, tf.shape(chunks)[1], self.chunk_length, self.output_features]
        # A graph cannot stack an empty list of partly known shape: no chunks, no stacking.
        stacked = tf.cond(
            size > 0, outputs.stack, lambda: tf.zeros(shape, chunks.dtype)
        )  # (chunks, B, c, U)
        return tf.reshape(stacked, shape), list(states)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_features)

    def get_config(self):
        config = super().get_config()
        for key in ("return_sequences", "return_state"):
            config.pop(key, None)
        config.update(
            {
                "chunk_length": self.chunk_length,
                "bptt_chunks": self.bptt_chunks,
                "pooling": self.pooling,
            }
        )
        return config
