"""Translation: an encoder-decoder with attention (Bahdanau et al. 2015, Luong et al. 2015).

Model:

    source ids -> embedding -> RNNStack encoder (bidirectional by default) -> memory
                                   final states -> Bridge (dense or zeros) -> decoder states
    target ids -> embedding -> AttentionDecoder:
        h_t = RNNStack decoder step([embedding_t; a_{t-1}])    (a_{t-1} only with input feeding)
        c_t, weights_t = attention(h_t, memory, source mask)  (additive | dot | general)
        a_t = tanh(W [c_t; h_t])                              the attentional vector
        logits_t = V a_t (float32; V tied to the target embeddings as an option)

Training is teacher forcing with a label-smoothed, padding-masked cross
entropy. Without input feeding the decoder's RNNStack runs over the whole
target at once and attention is computed for all steps in parallel; with it,
the decoder steps through time in a `tf.while_loop`. Decoding (greedy and
beam search, `textrnn.sampling`) uses the same `AttentionDecoder.step`.

Run directory: `source/` and `target/` hold each language's `tokenizer.json`
and `vocab.txt` (identical copies when `tokenizer.joint`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from textrnn import data as data_lib
from textrnn.decoding import search
from textrnn.errors import ConfigError, DataError, RunDirError, UserError
from textrnn.fileio import atomic_write_text, check_output_file
from textrnn.layers.attention import make_attention
from textrnn.layers.rnn_stack import RNNStack
from textrnn.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Tokenizer,
    count_unknown,
    encode_texts,
    learn_vocabulary,
    save_tokenizer_files,
)
from textrnn.training import fit as fit_lib
from textrnn.training import optimizer as optimizer_lib
from textrnn.training import run_dir as run_dir_lib
from textrnn.translation.config import MAX_BEAM_SIZE, TranslationConfig, check_decoding

logger = logging.getLogger(__name__)

Config = TranslationConfig
SOURCE_DIR, TARGET_DIR = "source", "target"


# ----------------------------------------------------------------------------- data


@dataclass
class Pairs:
    """Aligned sentence pairs read from files or a table, with what was skipped."""

    sources: list[str]
    targets: list[str]
    where: str = ""
    skipped_empty: int = 0
    notes: list[str] = field(default_factory=list)


def read_pairs(
    source: str = "",
    target: str = "",
    table: str = "",
    source_column: str = "source",
    target_column: str = "target",
    encoding: str = "utf-8",
    options: tuple[str, str, str] = ("--source", "--target", "--train"),
    split: str = "train",
) -> Pairs:
    """Read aligned pairs from two line-aligned files or from one table; skip and count empty pairs."""
    source_option, target_option, table_option = options
    if table:
        rows = data_lib.load_table(table, encoding=encoding, option=table_option, split=split)
        data_lib.require_columns(
            rows, {"--source-column": source_column, "--target-column": target_column}, table
        )
        sources, targets, where = list(rows[source_column]), list(rows[target_column]), table
    else:
        if not source or not target:
            missing = source_option if not source else target_option
            raise DataError(
                f"no {missing} file: pass both {source_option} and {target_option} (or {table_option} with a table)"
            )
        sources = data_lib.read_lines(source, encoding, source_option)
        targets = data_lib.read_lines(target, encoding, target_option)
        if len(sources) != len(targets):
            raise DataError(
                f"{source} has {len(sources)} lines but {target} has {len(targets)}; "
                f"{source_option} and {target_option} must be aligned line by line"
            )
        where = f"{source} / {target}"
    pairs = Pairs([], [], where=where)
    for s, t in zip(sources, targets, strict=True):
        if not isinstance(s, str) or not isinstance(t, str) or not s.strip() or not t.strip():
            pairs.skipped_empty += 1
            continue
        pairs.sources.append(s.strip())
        pairs.targets.append(t.strip())
    if pairs.skipped_empty:
        pairs.notes.append(f"{where}: skipped {pairs.skipped_empty} pair(s) with an empty side")
    if not pairs.sources:
        raise DataError(f"{where}: no usable sentence pairs (all {pairs.skipped_empty} empty)")
    return pairs


def build_tokenizers(
    config: TranslationConfig, run_dir: Path, pairs: Pairs
) -> tuple[Tokenizer, Tokenizer]:
    """Learn source and target vocabularies (or one joint one) and save them in the run directory."""
    settings = config.tokenizer
    if settings.joint:
        vocabulary = learn_vocabulary(settings, pairs.sources + pairs.targets)
        source_vocabulary = target_vocabulary = vocabulary
    else:
        source_vocabulary = learn_vocabulary(settings, pairs.sources)
        target_vocabulary = learn_vocabulary(settings, pairs.targets)
    save_tokenizer_files(run_dir / SOURCE_DIR, settings, source_vocabulary)
    save_tokenizer_files(run_dir / TARGET_DIR, settings, target_vocabulary)
    return load_tokenizers(run_dir)


def load_tokenizers(run_dir: str | os.PathLike) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers saved in a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / SOURCE_DIR).is_dir() or not (run_dir / TARGET_DIR).is_dir():
        raise RunDirError(
            f"{run_dir}: missing source/ or target/ vocabulary; is this a translation run directory?"
        )
    return Tokenizer.load(run_dir / SOURCE_DIR), Tokenizer.load(run_dir / TARGET_DIR)


@dataclass
class EncodedPairs:
    source_ids: tf.RaggedTensor  # (pairs, (tokens))
    target_ids: tf.RaggedTensor  # (pairs, (tokens)) with [BOS] ... [EOS]
    source_truncated: int
    target_truncated: int


def encode_pairs(
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    pairs: Pairs,
    config: TranslationConfig,
) -> EncodedPairs:
    """Tokenize both sides, truncating (and counting) sentences over the maximum lengths."""
    source_max, target_max = config.data.source_max_length, config.data.target_max_length
    source = encode_texts(source_tokenizer, pairs.sources, source_max + 1)
    target = encode_texts(target_tokenizer, pairs.targets, target_max - 1)
    source_truncated = int(tf.reduce_sum(tf.cast(source.row_lengths() > source_max, tf.int32)))
    target_truncated = int(tf.reduce_sum(tf.cast(target.row_lengths() > target_max - 2, tf.int32)))
    source = source[:, :source_max]
    target = target[:, : target_max - 2]
    rows = target.nrows()
    bos = tf.fill([rows, 1], tf.constant(BOS_ID, target.dtype))
    eos = tf.fill([rows, 1], tf.constant(EOS_ID, target.dtype))
    target = tf.concat([bos, target, eos], axis=1)
    return EncodedPairs(source, target, source_truncated, target_truncated)


def load_datasets(config: TranslationConfig, run_dir: str | os.PathLike) -> fit_lib.TaskData:
    """Read the pairs, learn (or reload) the vocabularies, build the teacher-forcing pipelines."""
    run_dir = Path(run_dir)
    data = config.data
    if not (data.train or data.source or data.target):
        raise DataError("no training data: pass --source FILE --target FILE (or --train TABLE)")
    train = read_pairs(
        data.source,
        data.target,
        data.train,
        data.source_column,
        data.target_column,
        data.encoding,
        ("--source", "--target", "--train"),
    )
    report = list(train.notes)
    if data.valid or data.valid_source or data.valid_target:
        valid = read_pairs(
            data.valid_source,
            data.valid_target,
            data.valid,
            data.source_column,
            data.target_column,
            data.encoding,
            ("--valid-source", "--valid-target", "--valid"),
            split="validation",
        )
        report += valid.notes
    else:
        if len(train.sources) < 2:
            raise DataError(
                f"{train.where}: need at least 2 pairs to hold out validation data; pass --valid-source/--valid-target"
            )
        held, kept = data_lib.holdout_split(
            len(train.sources), data.validation_split, config.training.seed
        )
        valid = Pairs(
            [train.sources[i] for i in held], [train.targets[i] for i in held], where="held-out"
        )
        train = Pairs(
            [train.sources[i] for i in kept], [train.targets[i] for i in kept], where=train.where
        )
        report.append(
            f"validation: held out {len(held)} of {len(held) + len(kept)} training pairs (seed {config.training.seed})"
        )

    if (run_dir / TARGET_DIR / "vocab.txt").exists():
        tokenizers = load_tokenizers(run_dir)
    else:
        tokenizers = build_tokenizers(config, run_dir, train)
    source_tokenizer, target_tokenizer = tokenizers
    train_encoded = encode_pairs(source_tokenizer, target_tokenizer, train, config)
    valid_encoded = encode_pairs(source_tokenizer, target_tokenizer, valid, config)
    for name, encoded in (("training", train_encoded), ("validation", valid_encoded)):
        if encoded.source_truncated or encoded.target_truncated:
            report.append(
                f"{name}: truncated {encoded.source_truncated} source sentence(s) to "
                f"{data.source_max_length} tokens and {encoded.target_truncated} target sentence(s) to "
                f"{data.target_max_length} (data.source_max_length / data.target_max_length)"
            )
    unknown_source = count_unknown(valid_encoded.source_ids) / max(
        1, int(tf.size(valid_encoded.source_ids.flat_values))
    )
    unknown_target = count_unknown(valid_encoded.target_ids) / max(
        1, int(tf.size(valid_encoded.target_ids.flat_values))
    )
    target_tokens = int(tf.size(train_encoded.target_ids.flat_values)) - len(train.sources)
    report.append(
        f"data: {len(train.sources)} training / {len(valid.sources)} validation pairs; vocabulary "
        f"{source_tokenizer.vocabulary_size} source / {target_tokenizer.vocabulary_size} target "
        f"({source_tokenizer.kind}{', joint' if config.tokenizer.joint else ''}); "
        f"{target_tokens} training target tokens; validation unknown-token rate "
        f"{unknown_source:.1%} source / {unknown_target:.1%} target"
    )
    training = config.training
    longest = max(data.source_max_length, data.target_max_length)
    train_dataset = data_lib.batched_pairs(
        train_encoded.source_ids,
        train_encoded.target_ids,
        training.batch_size,
        longest,
        shuffle=True,
        seed=training.seed,
        static_shapes=training.static_shapes,
        shuffle_buffer=training.shuffle_buffer,
    )
    valid_dataset = data_lib.batched_pairs(
        valid_encoded.source_ids,
        valid_encoded.target_ids,
        training.batch_size,
        longest,
        shuffle=False,
        seed=training.seed,
        static_shapes=training.static_shapes,
    )
    report.append(
        f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions "
        "(source and target)"
    )
    return fit_lib.TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=(source_tokenizer, target_tokenizer),
        steps_per_epoch=math.ceil(len(train.sources) / training.batch_size),
        report=report,
    )


# ----------------------------------------------------------------------------- layers


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
                f"tied embeddings need attentional_dim ({self.feed_dim}) == embedding_dim ({embedding_dim})"
            )
        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, mask_zero=True, name="embedding"
        )
        self.embedding_dropout_layer = keras.layers.Dropout(
            embedding_dropout, name="embedding_dropout"
        )
        self.stack = RNNStack(
            cell=cell,
            num_layers=num_layers,
            units=units,
            dropout=dropout,
            residual=residual,
            return_sequences=True,
            return_state=True,
            implementation=implementation,
            name="stack",
        )
        self.attention_layer = make_attention(
            attention, units=attention_units or units, name="attention"
        )
        self.attentional = keras.layers.Dense(
            self.feed_dim, activation="tanh", use_bias=False, name="attentional"
        )
        self.output_dropout_layer = keras.layers.Dropout(output_dropout, name="output_dropout")
        if not tie_embeddings:
            self.output_layer = keras.layers.Dense(vocabulary_size, dtype="float32", name="logits")

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
            matrix = ops.cast(
                self.embedding.embeddings, attentional.dtype
            )  # (vocabulary, embedding_dim)
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
        """Decoding step: previous ids `(batch,)` -> `(log_probs (batch, vocab), state, weights)`."""
        embedded = ops.take(
            self.embedding.embeddings, ids, axis=0
        )  # (batch, embedding_dim), no mask
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
        if not self.input_feeding:
            target_mask = ops.not_equal(target_ids, 0)
            outputs = self.stack(
                embedded, mask=target_mask, initial_state=list(initial_state), training=training
            )
            output = outputs[0]  # (batch, time, units)
            attentional, weights = self._attend(
                output, memory, processed_memory, source_mask, training
            )
        else:
            attentional, weights = self._input_feeding_loop(
                embedded, memory, processed_memory, source_mask, list(initial_state), training
            )
        return [self.logits(attentional), weights]

    def _input_feeding_loop(
        self, embedded, memory, processed_memory, source_mask, states, training
    ):
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
        config.update(
            {
                name: getattr(self, name)
                for name in (
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
            }
        )
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class MaskedSequenceLoss(keras.losses.Loss):
    """Token-level cross entropy over non-padding targets, with optional label smoothing.

    Returns the mean over the batch's real target tokens (id != 0), so long
    and short batches weigh each token equally.

    Args:
        label_smoothing: mass spread uniformly over the vocabulary.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")  # (batch, time)
        log_probs = tf.nn.log_softmax(
            ops.cast(y_pred, "float32"), axis=-1
        )  # (batch, time, vocabulary)
        nll = -tf.gather(log_probs, y_true, batch_dims=2)  # (batch, time)
        if self.label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)
            nll = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing})
        return config


# ----------------------------------------------------------------------------- model


def _check_model_config(config: TranslationConfig) -> None:
    model = config.model
    memory_features = model.encoder.units * (2 if model.encoder.bidirectional else 1)
    if model.attention == "dot" and memory_features != model.decoder.units:
        raise ConfigError(
            f"model.attention = 'dot' needs decoder units ({model.decoder.units}) equal to the encoder "
            f"output size ({memory_features}); use 'general' or change model.decoder.units"
        )
    if (
        model.tie_embeddings
        and (model.attentional_dim or model.decoder.units) != model.embedding_dim
    ):
        raise ConfigError(
            "model.tie_embeddings needs model.attentional_dim (or decoder units) equal to model.embedding_dim"
        )


def build_model(
    config: TranslationConfig,
    tokenizer: tuple[Tokenizer, Tokenizer],
    total_steps: int | None = None,
    compile: bool = True,
    implementation: str = "auto",
) -> keras.Model:
    """The teacher-forcing model `{source_ids, target_ids} -> logits`; compiled unless `compile=False`.

    `implementation` is the `RNNStack` one; inference uses "keras" (see `load_run`).
    """
    _check_model_config(config)
    source_tokenizer, target_tokenizer = tokenizer
    model_config, encoder = config.model, config.model.encoder
    source_ids = keras.Input(
        shape=(None,), dtype="int32", name="source_ids"
    )  # (batch, source_time)
    target_ids = keras.Input(shape=(None,), dtype="int32", name="target_ids")  # (batch, time)
    x = keras.layers.Embedding(
        source_tokenizer.vocabulary_size,
        model_config.embedding_dim,
        mask_zero=True,
        name="source_embedding",
    )(source_ids)  # (batch, source_time, embedding_dim)
    x = keras.layers.Dropout(model_config.embedding_dropout, name="source_embedding_dropout")(x)
    encoded = RNNStack(
        cell=encoder.cell,
        num_layers=encoder.num_layers,
        units=encoder.units,
        bidirectional=encoder.bidirectional,
        dropout=encoder.dropout,
        residual=encoder.residual,
        return_sequences=True,
        return_state=True,
        implementation=implementation,
        name="encoder",
    )(x)
    memory, encoder_states = encoded[0], encoded[1:]  # (batch, source_time, memory_features)
    decoder_config = model_config.decoder
    initial_state = Bridge(
        model_config.bridge,
        encoder.cell,
        encoder.num_layers,
        encoder.bidirectional,
        decoder_config.cell,
        decoder_config.num_layers,
        decoder_config.units,
        name="bridge",
    )(encoder_states)
    source_mask = keras.ops.not_equal(source_ids, 0)  # (batch, source_time)
    logits, _ = AttentionDecoder(
        vocabulary_size=target_tokenizer.vocabulary_size,
        embedding_dim=model_config.embedding_dim,
        cell=decoder_config.cell,
        num_layers=decoder_config.num_layers,
        units=decoder_config.units,
        dropout=decoder_config.dropout,
        residual=decoder_config.residual,
        attention=model_config.attention,
        attention_units=model_config.attention_units,
        attentional_dim=model_config.attentional_dim,
        input_feeding=model_config.input_feeding,
        output_dropout=model_config.dropout,
        embedding_dropout=model_config.embedding_dropout,
        tie_embeddings=model_config.tie_embeddings,
        implementation=implementation,
        name="decoder",
    )(target_ids, memory, source_mask, initial_state)
    model = keras.Model(
        {"source_ids": source_ids, "target_ids": target_ids}, logits, name="translation"
    )
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=MaskedSequenceLoss(model_config.label_smoothing),
        jit_compile=optimizer_lib.jit_compile_flag(config.training),
    )
    return model


def load_run(
    run_dir: str | os.PathLike,
) -> tuple[TranslationConfig, Tokenizer, Tokenizer, keras.Model]:
    """Rebuild a trained translation model from its run directory.

    Inference runs Keras's recurrent loop whatever the implementation: the
    fast CPU loop only runs in training (see `textrnn.fast_rnn`).
    """
    config = run_dir_lib.load_run_config(run_dir, TranslationConfig)
    if config.task != "translation":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a translation one")
    source_tokenizer, target_tokenizer = load_tokenizers(run_dir)
    model = build_model(config, (source_tokenizer, target_tokenizer), compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return config, source_tokenizer, target_tokenizer, model


# ----------------------------------------------------------------------------- decoding


def detokenize_punctuation(texts: tf.Tensor) -> tf.Tensor:
    """Undo the word split's spaces around punctuation: "a , b ( c ) T - Shirt ." -> "a, b (c) T-Shirt."."""
    texts = tf.strings.regex_replace(texts, r" ([.,!?;:%)\]}])", r"\1")
    texts = tf.strings.regex_replace(texts, r"([(\[{]) ", r"\1")
    return tf.strings.regex_replace(texts, r"(\pL) - (\pL)", r"\1-\2")


class Translator(tf.Module):
    """In-graph translation of raw strings with a trained model: tokenize, encode, search, detokenize.

    `translate(source, beam_size, max_length, length_penalty, max_length_ratio)`
    is one `tf.function` for every setting (beam size 1 runs `greedy_search`).
    Output length per sentence: min(ceil(ratio * source tokens) + offset,
    max_length if > 0); a sentence reaching it ends with a forced [EOS]
    (`capped` is True).
    """

    def __init__(
        self,
        config: TranslationConfig,
        source_tokenizer: Tokenizer,
        target_tokenizer: Tokenizer,
        model: keras.Model,
    ):
        super().__init__(name="translator")
        self.config = config
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.model = model
        self.source_embedding = model.get_layer("source_embedding")
        self.encoder = model.get_layer("encoder")
        self.bridge = model.get_layer("bridge")
        self.decoder = model.get_layer("decoder")
        self.translate = tf.function(
            self._translate,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="source"),
                tf.TensorSpec([], tf.int32, name="beam_size"),
                tf.TensorSpec([], tf.int32, name="max_length"),
                tf.TensorSpec([], tf.float32, name="length_penalty"),
                tf.TensorSpec([], tf.float32, name="max_length_ratio"),
            ],
        )

    def encode(self, source_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """ids (batch, source_time) -> memory, source mask, decoder initial states."""
        mask = tf.not_equal(source_ids, PAD_ID)  # (batch, source_time)
        embedded = self.source_embedding(source_ids)  # (batch, source_time, embedding_dim)
        encoded = self.encoder(embedded, mask=mask, training=False)
        memory, states = encoded[0], encoded[1:]  # (batch, source_time, memory_features)
        return memory, mask, self.bridge(list(states))

    def _translate(self, source, beam_size, max_length, length_penalty, max_length_ratio):
        tf.debugging.assert_positive(beam_size, message="beam_size must be >= 1")
        # Served requests choose the beam: a huge one would hold the server's memory and
        # cores for minutes.
        tf.debugging.assert_less_equal(
            beam_size, MAX_BEAM_SIZE, message=f"beam_size must be <= {MAX_BEAM_SIZE}"
        )
        source_ids = self.source_tokenizer.encode_padded(source, self.config.data.source_max_length)
        source_lengths = tf.math.count_nonzero(source_ids, axis=1, dtype=tf.int32)  # (batch,)
        limits = tf.cast(
            tf.math.ceil(max_length_ratio * tf.cast(source_lengths, tf.float32)), tf.int32
        )
        limits = limits + self.config.decoding.max_length_offset
        limits = tf.where(max_length > 0, tf.minimum(limits, max_length), limits)  # (batch,)
        memory, mask, initial = self.encode(source_ids)
        memory_length = tf.shape(memory)[1]

        def search_greedy():
            processed = self.decoder.process_memory(memory)

            def step(ids, state):
                return self.decoder.step(ids, state, memory, processed, mask)

            state = {"states": initial, "feed": self.decoder.initial_feed(memory)}
            result = search.greedy_search(
                step, state, limits, BOS_ID, EOS_ID, memory_length, length_penalty
            )
            return {key: value[:, tf.newaxis] for key, value in result.items()}

        def search_beam():
            tiled_memory = search.tile_beams(memory, beam_size)
            tiled_mask = search.tile_beams(mask, beam_size)
            processed = self.decoder.process_memory(tiled_memory)

            def step(ids, state):
                return self.decoder.step(ids, state, tiled_memory, processed, tiled_mask)

            state = {"states": initial, "feed": self.decoder.initial_feed(memory)}
            return search.beam_search(
                step, state, limits, beam_size, BOS_ID, EOS_ID, memory_length, length_penalty
            )

        result = tf.cond(tf.equal(beam_size, 1), search_greedy, search_beam)
        ids = result["ids"]  # (batch, k, time)
        batch, k = tf.shape(ids)[0], tf.shape(ids)[1]
        texts = self.target_tokenizer.detokenize(tf.reshape(ids, [batch * k, -1]))
        hypotheses = tf.reshape(detokenize_punctuation(texts), [batch, k])
        best_ids = ids[:, 0]  # (batch, time)
        best_lengths = result["lengths"][:, 0]
        return {
            "translation": hypotheses[:, 0],
            "score": result["score"][:, 0],
            "hypotheses": hypotheses,
            "hypothesis_scores": result["score"],
            "attention": result["attention"][:, 0],  # (batch, time, source_time)
            "source_tokens": self.source_tokenizer.id_to_token(source_ids),  # (batch, source_time)
            "target_tokens": self.target_tokenizer.id_to_token(best_ids),  # (batch, time)
            "target_lengths": best_lengths,
            "capped": tf.greater_equal(best_lengths, limits),  # (batch,) the output hit its cap
        }


def serving_signatures(translator: Translator) -> dict[str, Any]:
    """`serving_default` (source -> translation, score) and `translate` (+ beam_size, max_length)."""
    decoding = translator.config.decoding

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def serve(source: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = translator.translate(
            source,
            tf.constant(decoding.beam_size),
            tf.constant(0),
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
        )
        return {"translation": outputs["translation"], "score": outputs["score"]}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([], tf.int32, name="beam_size"),
            tf.TensorSpec([], tf.int32, name="max_length"),
        ]
    )
    def translate(
        source: tf.Tensor, beam_size: tf.Tensor, max_length: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return translator.translate(
            source,
            beam_size,
            max_length,
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
        )

    return {"serving_default": serve, "translate": translate}


def export_parts(
    config: TranslationConfig,
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    model: keras.Model,
) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """(signatures, resources to track, manifest) for `textrnn.export`."""
    translator = Translator(config, source_tokenizer, target_tokenizer, model)
    manifest = {
        "source_max_length": config.data.source_max_length,
        "target_max_length": config.data.target_max_length,
        "decoding": {
            "beam_size": config.decoding.beam_size,
            "length_penalty": config.decoding.length_penalty,
            "max_length_ratio": config.decoding.max_length_ratio,
            "max_length_offset": config.decoding.max_length_offset,
        },
        "source_tokenizer": source_tokenizer.settings(),
        "target_tokenizer": target_tokenizer.settings(),
    }
    return (
        serving_signatures(translator),
        [model, source_tokenizer, target_tokenizer, translator],
        manifest,
    )


def warmup_requests(
    config, source_tokenizer, target_tokenizer, model
) -> list[tuple[str, dict[str, Any]]]:
    source = np.array([b"A man is riding a bike.", b""], dtype=object)
    return [
        ("serving_default", {"source": source}),
        (
            "translate",
            {
                "source": source,
                "beam_size": np.int32(config.decoding.beam_size),
                "max_length": np.int32(0),
            },
        ),
    ]


# ----------------------------------------------------------------------------- library API


@dataclass
class Translation:
    source: str
    translation: str
    score: float
    hypotheses: list[tuple[str, float]]  # n-best (text, length-penalized score), best first
    capped: bool = False
    source_tokens: list[str] = field(default_factory=list)
    target_tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # (target tokens, source tokens)


def validate_decoding(
    beam_size: int,
    n_best: int = 1,
    length_penalty: float = 0.0,
    max_length_ratio: float = 1.0,
    max_length: int = 0,
) -> None:
    """Raise `ConfigError` naming the option when a decoding setting is out of range."""
    check_decoding(
        beam_size, length_penalty, max_length_ratio, lambda key: "--" + key.replace("_", "-")
    )
    if not 1 <= n_best <= beam_size:
        raise ConfigError(f"--n-best must be in [1, --beam-size {beam_size}], got {n_best}")
    if max_length < 0:
        raise ConfigError(
            f"--max-length must be >= 0 (0: from --max-length-ratio), got {max_length}"
        )


def translate_texts(
    serving: Any,
    texts: list[str],
    beam_size: int | None = None,
    n_best: int = 1,
    length_penalty: float | None = None,
    max_length_ratio: float | None = None,
    max_length: int = 0,
    batch_size: int = 64,
    with_attention: bool = False,
    warn: Any = logger.warning,
) -> list[Translation]:
    """Translate `texts` with a `textrnn.export.Serving` (run directory or export), batch by batch.

    Sentences are sorted by length inside the call so each batch pads little;
    results come back in input order. A run directory honours every setting;
    an export fixes `length_penalty` and `max_length_ratio` at export time.
    """
    if not texts:
        raise UserError("no input sentences: the request batch is empty")
    decoding = serving.manifest.get("decoding", {})
    beam_size = decoding.get("beam_size", 5) if beam_size is None else beam_size
    validate_decoding(beam_size, n_best, length_penalty or 0.0, max_length_ratio or 1.0, max_length)
    if serving.source == "run":
        translator: Translator = serving.keep_alive_translator
        length_penalty = decoding["length_penalty"] if length_penalty is None else length_penalty
        max_length_ratio = (
            decoding["max_length_ratio"] if max_length_ratio is None else max_length_ratio
        )

        def call(batch: tf.Tensor) -> dict[str, tf.Tensor]:
            return translator.translate(
                batch,
                tf.constant(beam_size),
                tf.constant(max_length),
                tf.constant(length_penalty, tf.float32),
                tf.constant(max_length_ratio, tf.float32),
            )
    else:
        for name, value in (
            ("length_penalty", length_penalty),
            ("max_length_ratio", max_length_ratio),
        ):
            if value is not None and value != decoding.get(name):
                raise ConfigError(
                    f"--{name.replace('_', '-')} needs a run directory: an export fixes it at export time "
                    f"({decoding.get(name)}); pass --model RUN_DIR"
                )
        function = serving.signatures["translate"]

        def call(batch: tf.Tensor) -> dict[str, tf.Tensor]:
            return function(
                source=batch, beam_size=tf.constant(beam_size), max_length=tf.constant(max_length)
            )

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list[Translation | None] = [None] * len(texts)
    source_max = serving.manifest.get("source_max_length")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        outputs = call(tf.constant([texts[i] for i in indices], tf.string))
        outputs = {key: value.numpy() for key, value in outputs.items()}
        for row, index in enumerate(indices):
            hypotheses = [
                (text.decode("utf-8"), float(score))
                for text, score in zip(
                    outputs["hypotheses"][row], outputs["hypothesis_scores"][row], strict=True
                )
                if score > search.NEGATIVE / 2
            ][:n_best]
            source_tokens = [
                t.decode("utf-8") for t in outputs["source_tokens"][row] if t != b"[PAD]"
            ]
            length = int(outputs["target_lengths"][row])
            item = Translation(
                source=texts[index],
                translation=outputs["translation"][row].decode("utf-8"),
                score=float(outputs["score"][row]),
                hypotheses=hypotheses,
                capped=bool(outputs["capped"][row]),
            )
            if with_attention:
                item.source_tokens = source_tokens
                item.target_tokens = [
                    t.decode("utf-8") for t in outputs["target_tokens"][row][:length]
                ]
                item.attention = outputs["attention"][row][:length, : len(source_tokens)]
            if source_max and len(source_tokens) >= source_max:
                warn(
                    f"sentence {index + 1}: longer than {source_max} source tokens; only the first {source_max} were translated"
                )
            if item.capped:
                warn(
                    f"sentence {index + 1}: output reached its length cap and was cut (raise --max-length-ratio or --max-length)"
                )
            results[index] = item
    return results  # type: ignore[return-value]


def open_model(path: str | os.PathLike) -> Any:
    """`export.load_serving` for translation, with the in-process translator kept for run directories."""
    from textrnn import export

    serving = export.load_serving(path, expected_task="translation")
    if serving.source == "run":
        serving.keep_alive_translator = Translator(*serving.keep_alive)
    return serving


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """sacreBLEU BLEU and chrF (default settings: 13a tokenization, cased) with their signatures."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(bleu_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_details": str(bleu_score),
    }


def validation_loss(
    config: TranslationConfig,
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    model: keras.Model,
    pairs: Pairs,
    batch_size: int = 64,
) -> float:
    """Mean per-token cross entropy (no label smoothing) of the references under teacher forcing."""
    encoded = encode_pairs(source_tokenizer, target_tokenizer, pairs, config)
    longest = max(config.data.source_max_length, config.data.target_max_length)
    dataset = data_lib.batched_pairs(
        encoded.source_ids, encoded.target_ids, batch_size, longest, False, 0
    )
    loss = MaskedSequenceLoss(0.0)
    total = tokens = 0.0
    for inputs, targets in dataset:
        count = float(tf.math.count_nonzero(targets))
        total += float(loss.call(targets, model(inputs, training=False))) * count
        tokens += count
    return total / max(tokens, 1.0)


def evaluate(
    run_dir: str | os.PathLike,
    source: str,
    target: str,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    max_length_ratio: float | None = None,
    batch_size: int = 64,
    output: str | os.PathLike | None = None,
    encoding: str | None = None,
) -> dict[str, Any]:
    """BLEU and chrF of the detokenized translations against the raw references, plus the loss."""
    import time

    if output:
        check_output_file(output, "--output")  # before decoding, not after
    serving = open_model(run_dir)
    if serving.source != "run":
        raise UserError(f"{run_dir} is an export; evaluate needs the run directory (--run-dir)")
    config, source_tokenizer, target_tokenizer, model = serving.keep_alive
    encoding = encoding or config.data.encoding
    sources = data_lib.read_lines(source, encoding, "--source")
    targets = data_lib.read_lines(target, encoding, "--target")
    if len(sources) != len(targets):
        raise DataError(
            f"{source} has {len(sources)} lines but {target} has {len(targets)}; "
            "--source and --target must be aligned line by line"
        )
    keep = [
        i for i, (s, t) in enumerate(zip(sources, targets, strict=True)) if s.strip() and t.strip()
    ]
    if not keep:
        raise DataError(f"{source} / {target}: no non-empty sentence pairs")
    beam = config.decoding.beam_size if beam_size is None else beam_size
    started = time.perf_counter()
    results = translate_texts(
        serving,
        [sources[i].strip() for i in keep],
        beam,
        1,
        length_penalty,
        max_length_ratio,
        0,
        batch_size,
        warn=lambda message: None,
    )
    seconds = time.perf_counter() - started
    hypotheses = [r.translation for r in results]
    references = [targets[i].strip() for i in keep]
    metrics = corpus_scores(hypotheses, references)
    pairs = Pairs([sources[i].strip() for i in keep], references)
    nll = validation_loss(config, source_tokenizer, target_tokenizer, model, pairs, batch_size)
    if output:
        lines = [""] * len(sources)
        for index, hypothesis in zip(keep, hypotheses, strict=True):
            lines[index] = hypothesis
        atomic_write_text(output, "".join(line + "\n" for line in lines))
    metrics.update(
        {
            "loss": round(nll, 4),
            "perplexity": round(math.exp(min(nll, 50.0)), 2),
            "sentences": len(keep),
            "skipped_empty": len(sources) - len(keep),
            "capped": sum(r.capped for r in results),
            "beam_size": beam,
            "length_penalty": config.decoding.length_penalty
            if length_penalty is None
            else length_penalty,
            "decode_seconds": round(seconds, 1),
            "sentences_per_second": round(len(keep) / max(seconds, 1e-9), 1),
        }
    )
    return metrics


def plot_attention(item: Translation, path: str | os.PathLike) -> Path:
    """Draw one sentence's attention matrix as a heatmap (matplotlib): source across, target down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if item.attention is None:
        raise UserError("no attention weights to plot")
    weights = item.attention  # (target tokens, source tokens)
    width = max(4.0, 0.45 * len(item.source_tokens) + 1.5)
    height = max(3.0, 0.4 * len(item.target_tokens) + 1.5)
    figure, axes = plt.subplots(figsize=(width, height))
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(item.source_tokens)), item.source_tokens, rotation=60, ha="right")
    axes.set_yticks(range(len(item.target_tokens)), item.target_tokens)
    axes.set_xlabel("source")
    axes.set_ylabel("target")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
