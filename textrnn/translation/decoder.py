"""The translation decoder's layers: `Bridge` (encoder states -> decoder states) and
`AttentionDecoder` (target embedding, `RNNStack`, attention, output layer).

    h_t = RNNStack decoder step([embedding_t; a_{t-1}])    (a_{t-1} only with input feeding)
    c_t, weights_t = attention(h_t, memory, source mask)  (additive | dot | general)
    a_t = tanh(W [c_t; h_t])                              the attentional vector
    logits_t = V a_t (float32; V tied to the target embeddings as an option)

Training (teacher forcing) and decoding (`AttentionDecoder.step`, driven by
`textrnn.decoding.search`) share `step_embedded`, so what is trained is what
decodes. With input feeding and one GRU / LSTM layer, training on the fast stack
runs the fused, XLA-compiled loop of `textrnn.layers.fast_rnn_decoder` (same
variables, same numbers: `tests/layers/test_fast_rnn_decoder.py`) and decoding its
one-step function (`fused_step_applies`); anything else keeps the step loop.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from textrnn.layers import fast_rnn_decoder
from textrnn.layers.attention import make_attention
from textrnn.layers.fast_rnn import FastGRU, FastLSTM
from textrnn.layers.rnn_stack import RNNStack
from textrnn.layers.variables import tf_value


@keras.saving.register_keras_serializable(package="textrnn")
class Bridge(keras.layers.Layer):
    """Encoder final states -> decoder initial states.

    `dense`: for decoder layer l (reading encoder layer min(l, last)), the
    forward and backward states are concatenated and projected:
    h = tanh(W_h [h_fw; h_bw]) and, for an LSTM decoder, c = W_c [c_fw; c_bw]
    (or of h when the encoder is not an LSTM). `zeros`: all zeros.

    Args:
        kind: "dense" or "zeros".
        encoder_cell, encoder_layers, encoder_bidirectional: the encoder `RNNStack`'s settings.
        decoder_cell, decoder_layers, decoder_units: the decoder `RNNStack`'s settings.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        states: the encoder's flat final states (`RNNStack` `return_state` order).

    Returns:
        The decoder's flat initial states, each `(batch, decoder_units)`.

    Example:

    >>> bridge = Bridge("dense", "gru", 1, True, "lstm", 2, 8)
    >>> [s.shape for s in bridge([keras.ops.ones((2, 4)), keras.ops.ones((2, 4))])]
    [(2, 8), (2, 8), (2, 8), (2, 8)]
    """

    def __init__(
        self,
        kind: str = "dense",
        encoder_cell: str = "gru",
        encoder_layers: int = 1,
        encoder_bidirectional: bool = True,
        decoder_cell: str = "gru",
        decoder_layers: int = 1,
        decoder_units: int = 128,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in ("dense", "zeros"):
            raise ValueError(f"kind must be 'dense' or 'zeros', got {kind!r}")
        self.kind = kind
        self.encoder_cell = encoder_cell
        self.encoder_layers = encoder_layers
        self.encoder_bidirectional = encoder_bidirectional
        self.decoder_cell = decoder_cell
        self.decoder_layers = decoder_layers
        self.decoder_units = decoder_units
        self.decoder_kinds = 2 if decoder_cell == "lstm" else 1
        self.projections = []
        if kind == "dense":
            for layer in range(decoder_layers):
                for k in range(self.decoder_kinds):
                    activation = "tanh" if k == 0 else None
                    self.projections.append(
                        keras.layers.Dense(
                            decoder_units, activation=activation, name=f"bridge_{layer}_{k}"
                        )
                    )

    def call(self, states):
        encoder_kinds = 2 if self.encoder_cell == "lstm" else 1
        directions = 2 if self.encoder_bidirectional else 1
        per_layer = encoder_kinds * directions
        outputs = []
        for layer in range(self.decoder_layers):
            source = min(layer, self.encoder_layers - 1)
            layer_states = states[source * per_layer : (source + 1) * per_layer]
            for k in range(self.decoder_kinds):
                kind = min(k, encoder_kinds - 1)  # an LSTM decoder's c from a GRU encoder's h
                joined = ops.concatenate(
                    [layer_states[d * encoder_kinds + kind] for d in range(directions)], axis=-1
                )  # (batch, directions * encoder_units)
                if self.kind == "zeros":
                    outputs.append(
                        ops.zeros((ops.shape(joined)[0], self.decoder_units), dtype=joined.dtype)
                    )
                else:
                    outputs.append(self.projections[layer * self.decoder_kinds + k](joined))
        return outputs

    def compute_output_shape(self, states_shape):
        batch = states_shape[0][0]
        return [(batch, self.decoder_units)] * (self.decoder_layers * self.decoder_kinds)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "encoder_cell": self.encoder_cell,
                "encoder_layers": self.encoder_layers,
                "encoder_bidirectional": self.encoder_bidirectional,
                "decoder_cell": self.decoder_cell,
                "decoder_layers": self.decoder_layers,
                "decoder_units": self.decoder_units,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class AttentionDecoder(keras.layers.Layer):
    """Target embedding, `RNNStack` decoder, attention and output layer (Luong et al. 2015).

    Args:
        vocabulary_size: target vocabulary size.
        embedding_dim: target embedding width.
        cell, num_layers, units, dropout, residual: the decoder `RNNStack`.
        attention: "additive", "dot" or "general".
        attention_units: hidden size of additive attention.
        attentional_dim: width of the attentional vector tanh(W [context; state]).
        input_feeding: feed the previous attentional vector with the next input.
        output_dropout: dropout on the attentional vector.
        embedding_dropout: dropout on the target embeddings.
        tie_embeddings: the output layer reuses the embedding matrix (needs
            `attentional_dim == embedding_dim`).
        implementation: the decoder `RNNStack`'s ("auto", "keras" or "fast").
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments (teacher forcing):
        target_ids: int `(batch, time)` decoder inputs ([BOS] ...), 0-padded.
        memory: encoder outputs `(batch, source_time, memory_features)`.
        source_mask: bool `(batch, source_time)`.
        initial_state: flat list of decoder initial states.

    Returns:
        `[logits (batch, time, vocabulary) float32, weights (batch, time, source_time)]`.

    Example:

    >>> decoder = AttentionDecoder(vocabulary_size=10, embedding_dim=4, units=8)
    >>> logits, weights = decoder(keras.ops.ones((2, 3), "int32"), keras.ops.ones((2, 5, 6)),
    ...                           keras.ops.ones((2, 5), "bool"), [keras.ops.zeros((2, 8))])
    >>> logits.shape, weights.shape
    ((2, 3, 10), (2, 3, 5))
    """

    CONFIG_KEYS = (
        "vocabulary_size",
        "embedding_dim",
        "cell",
        "num_layers",
        "units",
        "dropout",
        "residual",
        "attention",
        "attention_units",
        "attentional_dim",
        "input_feeding",
        "output_dropout",
        "embedding_dropout",
        "tie_embeddings",
        "implementation",
    )

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 128,
        cell: str = "gru",
        num_layers: int = 1,
        units: int = 128,
        dropout: float = 0.0,
        residual: bool = False,
        attention: str = "general",
        attention_units: int = 0,
        attentional_dim: int = 0,
        input_feeding: bool = True,
        output_dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        tie_embeddings: bool = False,
        implementation: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.implementation = implementation
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.cell = cell
        self.num_layers = num_layers
        self.units = units
        self.dropout = dropout
        self.residual = residual
        self.attention = attention
        self.attention_units = attention_units
        self.attentional_dim = attentional_dim
        self.input_feeding = input_feeding
        self.output_dropout = output_dropout
        self.embedding_dropout = embedding_dropout
        self.tie_embeddings = tie_embeddings
        self.feed_dim = attentional_dim or units
        if tie_embeddings and self.feed_dim != embedding_dim:
            raise ValueError(
                f"tied embeddings need attentional_dim ({self.feed_dim}) == "
                f"embedding_dim ({embedding_dim})"
            )
        self._create_sublayers()

    def _create_sublayers(self) -> None:
        # The attribute names are the weights' paths in saved runs: keep them.
        self.embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, mask_zero=True, name="embedding"
        )
        self.embedding_dropout_layer = keras.layers.Dropout(
            self.embedding_dropout, name="embedding_dropout"
        )
        self.stack = RNNStack(
            cell=self.cell,
            num_layers=self.num_layers,
            units=self.units,
            dropout=self.dropout,
            residual=self.residual,
            return_sequences=True,
            return_state=True,
            implementation=self.implementation,
            name="stack",
        )
        self.attention_layer = make_attention(
            self.attention, units=self.attention_units or self.units, name="attention"
        )
        self.attentional = keras.layers.Dense(
            self.feed_dim, activation="tanh", use_bias=False, name="attentional"
        )
        self.output_dropout_layer = keras.layers.Dropout(self.output_dropout, name="output_dropout")
        if not self.tie_embeddings:
            self.output_layer = keras.layers.Dense(
                self.vocabulary_size, dtype="float32", name="logits"
            )

    def build(
        self, target_ids_shape, memory_shape=None, source_mask_shape=None, initial_state_shape=None
    ):
        batch = target_ids_shape[0]
        memory_features = memory_shape[-1]
        self.embedding.build(tuple(target_ids_shape))
        stack_features = self.embedding_dim + (self.feed_dim if self.input_feeding else 0)
        self.stack.build((batch, None, stack_features))
        self.attention_layer.build((batch, None, self.units), (batch, None, memory_features))
        self.attentional.build((batch, None, self.units + memory_features))
        if self.tie_embeddings:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.vocabulary_size,), initializer="zeros"
            )
        else:
            self.output_layer.build((batch, None, self.feed_dim))
        self.built = True

    # -- pieces shared by training and decoding ------------------------------------

    def logits(self, attentional):
        """Attentional vectors `(..., feed_dim)` -> float32 logits `(..., vocabulary)`."""
        if self.tie_embeddings:
            # (vocabulary, embedding_dim)
            matrix = ops.cast(self.embedding.embeddings, attentional.dtype)
            logits = ops.matmul(attentional, ops.transpose(matrix)) + ops.cast(
                self.output_bias, attentional.dtype
            )
            return ops.cast(logits, "float32")
        return self.output_layer(attentional)

    def process_memory(self, memory):
        """Per-sentence precomputation for attention (the projected keys of additive attention)."""
        return self.attention_layer.process_value(memory)

    def _attend(self, output, memory, processed_memory, source_mask, training):
        context, weights = self.attention_layer(
            output, memory, value_mask=source_mask, processed_value=processed_memory
        )  # (batch, [time,] memory_features), (batch, [time,] source_time)
        attentional = self.attentional(
            ops.concatenate([context, ops.cast(output, context.dtype)], axis=-1)
        )
        attentional = self.output_dropout_layer(attentional, training=training)
        return attentional, weights

    def initial_feed(self, memory):
        """The zero attentional vector fed at the first step, `(batch, feed_dim)`."""
        return ops.zeros((ops.shape(memory)[0], self.feed_dim), dtype=memory.dtype)

    def step_embedded(
        self, embedded, feed, states, memory, processed_memory, source_mask, training=False
    ):
        """One decoder step from an embedded token `(batch, embedding_dim)`.

        Returns `(attentional (batch, feed_dim), weights (batch, source_time), new_states)`.
        """
        inputs = (
            ops.concatenate([embedded, ops.cast(feed, embedded.dtype)], axis=-1)
            if self.input_feeding
            else embedded
        )
        output, states = self.stack.step(inputs, states, training=training)  # (batch, units)
        attentional, weights = self._attend(output, memory, processed_memory, source_mask, training)
        return attentional, weights, states

    def step(self, ids, state: dict, memory, processed_memory, source_mask):
        """Decoding step: previous ids `(batch,)` -> `(log_probs (batch, vocab), state, weights)`.

        `state` is `{"states": decoder states, "feed": last attentional vector}`.
        """
        if self.fused_step_applies():
            attentional, weights, states = self._fused_step(
                ids, state, memory, processed_memory, source_mask
            )
        else:
            # (batch, embedding_dim), no mask
            embedded = ops.take(self.embedding.embeddings, ids, axis=0)
            attentional, weights, states = self.step_embedded(
                embedded, state["feed"], state["states"], memory, processed_memory, source_mask
            )
        log_probs = tf.nn.log_softmax(self.logits(attentional), axis=-1)  # (batch, vocabulary)
        return log_probs, {"states": states, "feed": attentional}, weights

    # -- teacher forcing -----------------------------------------------------------

    def call(self, target_ids, memory, source_mask, initial_state, training=None):
        embedded = self.embedding(target_ids)  # (batch, time, embedding_dim)
        embedded = self.embedding_dropout_layer(embedded, training=training)
        processed_memory = self.process_memory(memory)
        run = self._input_feeding_loop if self.input_feeding else self._all_steps_at_once
        attentional, weights = run(
            target_ids,
            embedded,
            memory,
            processed_memory,
            source_mask,
            list(initial_state),
            training,
        )
        return [self.logits(attentional), weights]

    def _all_steps_at_once(
        self, target_ids, embedded, memory, processed_memory, source_mask, states, training
    ):
        """Without input feeding: the stack runs over the whole target, attention in parallel."""
        target_mask = ops.not_equal(target_ids, 0)
        outputs = self.stack(embedded, mask=target_mask, initial_state=states, training=training)
        output = outputs[0]  # (batch, time, units)
        return self._attend(output, memory, processed_memory, source_mask, training)

    def fused_step_applies(self) -> bool:
        """True when decoding steps run `fast_rnn_decoder.decoder_step` (the training loop's
        step, the same arithmetic as `step_embedded`): with input feeding, one GRU
        (reset_after) or LSTM layer with Keras's default activations and a bias."""
        cell = self.stack.recurrent_layers[0].cell
        return (
            self.input_feeding
            and self.num_layers == 1
            and self.cell in ("gru", "lstm")
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias
            and getattr(cell, "reset_after", True)
            and self.compute_dtype in ("float32", "float64")
        )

    def _fused_step(self, ids, state, memory, processed_memory, source_mask):
        weights, embedding_kernel, input_bias = self.fused_weights()
        embedded = ops.take(self.embedding.embeddings, ids, axis=0)  # (batch, embedding_dim)
        keys = processed_memory if self.attention == "additive" else memory
        return fast_rnn_decoder.decoder_step(
            self.fused_spec(),
            tf.matmul(embedded, embedding_kernel) + input_bias,
            state["feed"],
            list(state["states"]),
            memory,
            keys,
            tf.cast(source_mask, tf.bool),
            weights,
        )

    def fast_loop_applies(self, training) -> bool:
        """True when teacher forcing with input feeding runs the fused loop of
        `textrnn.layers.fast_rnn_decoder`: training, on the fast stack (CPU), one GRU or
        LSTM layer in a configuration the fast stack computes exactly, float32 / float64 /
        bfloat16 (mixed precision: float32 variables cast, as Keras's layers cast them).
        Inference keeps the step loop below (XLA compiles per shape; see `fast_rnn`)."""
        layer = self.stack.recurrent_layers[0]
        return (
            bool(training)
            and self.input_feeding
            and self.num_layers == 1
            and isinstance(layer, (FastGRU, FastLSTM))
            and layer.fast_path_supported(training)
            and not layer.dropout
            and self.compute_dtype in ("float32", "float64", "bfloat16")
        )

    def fused_spec(self, dropout: bool = False) -> fast_rnn_decoder.DecoderSpec:
        """The static configuration of the fused loop for this decoder."""
        return fast_rnn_decoder.DecoderSpec(
            cell=self.cell,
            attention=self.attention,
            query_bias=bool(getattr(self.attention_layer, "use_bias", False)),
            dropout=dropout,
        )

    def fused_weights(self) -> tuple[list, tf.Tensor, tf.Tensor]:
        """`(flat weights in fast_rnn_decoder.split_weights' order, embedding rows of the
        input kernel (E, kU), input bias (kU,))`, read from this layer's own variables."""
        cell = self.stack.recurrent_layers[0].cell
        kernel = tf_value(cell.kernel)  # (E + F, kU): embedding rows, then feed rows
        bias = tf_value(cell.bias)  # GRU: (2, 3U) input and recurrent rows; LSTM: (4U,)
        weights = [kernel[self.embedding_dim :], tf_value(cell.recurrent_kernel)]
        input_bias = bias
        if self.cell == "gru":
            input_bias = bias[0]
            weights.append(bias[1])
        attention = self.attention_layer
        if self.attention == "additive":
            weights += [
                tf_value(attention.query_projection.kernel),
                tf_value(attention.score_vector),
            ]
        elif self.attention == "general":
            weights.append(tf_value(attention.query_projection.kernel))
            if attention.use_bias:
                weights.append(tf_value(attention.query_projection.bias))
        weights.append(tf_value(self.attentional.kernel))
        return weights, kernel[: self.embedding_dim], input_bias

    def _fused_loop(self, embedded, memory, processed_memory, source_mask, states, training):
        """`_input_feeding_loop`'s result from the fused, XLA-compiled loop."""
        weights, embedding_kernel, input_bias = (
            tf.nest.map_structure(lambda w: tf.cast(w, embedded.dtype), part)
            for part in self.fused_weights()
        )  # float32 variables, cast to the compute dtype (mixed_bfloat16) as Keras's layers do
        time_major = tf.transpose(embedded, [1, 0, 2])  # (time, batch, embedding_dim)
        # Hoisted out of the loop: the embedding part of the input projection, one product.
        projected = tf.einsum("tbe,eg->tbg", time_major, embedding_kernel) + input_bias
        dropout_mask = None
        if self.output_dropout:
            ones = tf.ones(tf.concat([tf.shape(projected)[:2], [self.feed_dim]], 0), memory.dtype)
            dropout_mask = self.output_dropout_layer(ones, training=training)
        keys = processed_memory if self.attention == "additive" else memory
        outputs, weights_seq = fast_rnn_decoder.attention_decoder_sequence(
            self.fused_spec(dropout=dropout_mask is not None),
            projected,
            list(states),
            self.initial_feed(memory),
            memory,
            keys,
            tf.cast(source_mask, tf.bool),
            dropout_mask,
            weights,
        )
        return tf.transpose(outputs, [1, 0, 2]), tf.transpose(weights_seq, [1, 0, 2])

    def _input_feeding_loop(
        self, target_ids, embedded, memory, processed_memory, source_mask, states, training
    ):
        """With input feeding: step through time in a `tf.while_loop`, each step fed the last
        attentional vector. Padded steps run too; the loss masks them."""
        if self.fast_loop_applies(training):
            return self._fused_loop(
                embedded, memory, processed_memory, source_mask, states, training
            )
        return self._step_loop(embedded, memory, processed_memory, source_mask, states, training)

    def _step_loop(self, embedded, memory, processed_memory, source_mask, states, training):
        """The reference loop: `step_embedded` at every target position."""
        time_major = tf.transpose(embedded, [1, 0, 2])  # (time, batch, embedding_dim)
        steps = tf.shape(time_major)[0]
        feed = self.initial_feed(memory)
        attentional_array = tf.TensorArray(
            embedded.dtype, size=steps, element_shape=[None, self.feed_dim]
        )
        weights_array = tf.TensorArray(embedded.dtype, size=steps, element_shape=[None, None])

        def body(t, feed, states, attentional_array, weights_array):
            attentional, weights, states = self.step_embedded(
                time_major[t], feed, states, memory, processed_memory, source_mask, training
            )
            return (
                t + 1,
                attentional,
                states,
                attentional_array.write(t, attentional),
                weights_array.write(t, ops.cast(weights, embedded.dtype)),
            )

        _, _, _, attentional_array, weights_array = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), feed, states, attentional_array, weights_array),
            maximum_iterations=steps,  # XLA needs the bound to differentiate the TensorArrays
        )
        attentional = tf.transpose(attentional_array.stack(), [1, 0, 2])  # (batch, time, feed_dim)
        weights = tf.transpose(weights_array.stack(), [1, 0, 2])  # (batch, time, source_time)
        return attentional, weights

    def compute_output_shape(
        self, target_ids_shape, memory_shape=None, source_mask_shape=None, initial_state_shape=None
    ):
        batch, time = target_ids_shape[0], target_ids_shape[1]
        return [(batch, time, self.vocabulary_size), (batch, time, memory_shape[1])]

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self.CONFIG_KEYS})
        return config
