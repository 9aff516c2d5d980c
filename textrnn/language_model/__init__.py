"""Language modeling and text generation: many-to-many, then one-to-many.

Model: embedding -> dropout -> RNNStack (return_state) -> dropout -> logits,
either a dense layer or the transposed embedding matrix (`tie_embeddings`).

Data layouts (`data.layout`):

- `continuous`: the file is one token stream (a book). `[BOS]` starts it and
  the model predicts every token of the file. The stream is cut into
  `batch_size` contiguous rows; batch k holds columns `[k * seq_len,
  (k + 1) * seq_len)` of every row, so row r of batch k + 1 continues row r
  of batch k. With `data.carry_state` the recurrent states flow from one
  batch to the next (truncated BPTT); without it, the windows are shuffled
  and each starts from zero states.
- `lines`: one sentence or document a line, `[BOS] line [EOS]`; empty lines
  are skipped and counted.

Generation runs entirely in the graph: the prompt goes through the stack
once, then a `tf.while_loop` takes one `RNNStack.step` per token, carrying
the states, sampling with `textrnn.sampling` and stateless seeds.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn.decoding import sampling
from textrnn.errors import ConfigError, DataError, RunDirError
from textrnn.language_model.config import LanguageModelConfig
from textrnn.layers.rnn_stack import RNNStack
from textrnn.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    build_tokenizer,
    encode_rows,
)
from textrnn.training import fit as fit_lib
from textrnn.training import optimizer as optimizer_lib
from textrnn.training import run_dir as run_dir_lib

logger = logging.getLogger(__name__)

Config = LanguageModelConfig
MAX_TOKENS_CAP = sampling.MAX_TOKENS_CAP
EVALUATE_SEQ_LEN = 256  # time steps per evaluation call (states carried between calls)


# ----------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="textrnn")
class ReversibleEmbedding(keras.layers.Embedding):
    """An embedding that also maps features back to vocabulary logits (tied weights).

    Args:
        input_dim: vocabulary size.
        output_dim: embedding width.
        tied: also build the output bias used by `reverse=True` calls.
        **kwargs: `keras.layers.Embedding` arguments (e.g. `mask_zero=True`).

    Call arguments:
        inputs: token ids `(batch, time)`, or features `(..., output_dim)` with `reverse=True`.
        reverse: return `inputs @ embeddings^T + bias` (float32 logits).

    Example:

    >>> layer = ReversibleEmbedding(10, 4, tied=True)
    >>> layer(layer(keras.ops.ones((2, 3), "int32")), reverse=True).shape
    (2, 3, 10)
    """

    def __init__(self, input_dim: int, output_dim: int, tied: bool = False, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        self.tied = tied

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.tied:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.input_dim,), initializer="zeros"
            )

    def get_config(self):
        config = super().get_config()
        config.update({"tied": self.tied})
        return config

    # Embedding saves only its matrix; save and load every variable (matrix, output bias).
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def call(self, inputs, reverse: bool = False):
        if not reverse:
            return super().call(inputs)
        kernel = keras.ops.cast(self.embeddings, inputs.dtype)
        logits = keras.ops.matmul(inputs, keras.ops.transpose(kernel))  # (..., vocabulary)
        return keras.ops.cast(logits, "float32") + self.output_bias

    def compute_mask(self, inputs, mask=None):
        if "float" in str(getattr(inputs, "dtype", "")):
            return mask  # reverse call: keep the sequence mask
        return super().compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape, reverse: bool = False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse: bool = False):
        shape = self.compute_output_shape(inputs.shape, reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)


# ----------------------------------------------------------------------------- data


@dataclass
class Corpus:
    """A tokenized text: what the model reads (`inputs`) and predicts (`targets`)."""

    inputs: list[np.ndarray]  # int32 rows; one row (continuous) or one per line
    targets: list[np.ndarray]
    characters: int  # characters of text the targets cover (for bits per character)
    unknown: int  # targets that are [UNK]
    skipped_empty: int = 0

    @property
    def num_tokens(self) -> int:
        return int(sum(len(t) for t in self.targets))


def read_corpus_text(path: str, encoding: str, option: str) -> str:
    """The whole file, rejecting binary files and bad encodings with a line naming the option."""
    text = data_lib.read_text(path, encoding, option)
    if not text.strip():
        raise DataError(f"{path} holds no text ({option})")
    return text


def encode_corpus(tokenizer: Tokenizer, text: str, layout: str) -> Corpus:
    """Tokenize `text` for `layout`; every token of the text becomes a target."""
    if layout == "continuous":
        rows = encode_rows(tokenizer, text.splitlines(keepends=True))
        ids = np.concatenate(rows) if rows else np.zeros([0], np.int32)
        stream = np.concatenate([[BOS_ID], ids]).astype(np.int32)
        return Corpus([stream[:-1]], [stream[1:]], len(text), int(np.sum(ids == UNK_ID)))
    lines = text.splitlines()
    kept = [line for line in lines if line.strip()]
    rows = encode_rows(tokenizer, kept)
    inputs = [np.concatenate([[BOS_ID], row]).astype(np.int32) for row in rows]
    targets = [np.concatenate([row, [EOS_ID]]).astype(np.int32) for row in rows]
    unknown = int(sum(np.sum(row == UNK_ID) for row in rows))
    characters = sum(len(line) + 1 for line in kept)  # the newline is what [EOS] predicts
    return Corpus(inputs, targets, characters, unknown, skipped_empty=len(lines) - len(kept))


def contiguous_layout(
    inputs: np.ndarray, targets: np.ndarray, batch_size: int, seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one stream into `batch_size` contiguous rows, padded to a multiple of `seq_len`.

    Returns `(inputs, targets)`, both `int32 (batch_size, chunks * seq_len)`.
    Row r holds stream positions `[r * L, (r + 1) * L)` with
    `L = ceil(N / batch_size)`; batch k is columns `[k * seq_len, (k + 1) * seq_len)`.
    Padding (id 0, masked) fills the end of the last row and every row's
    last chunk: each token of the stream appears exactly once.
    """
    total = len(targets)
    row_length = max(1, math.ceil(total / batch_size))
    width = math.ceil(row_length / seq_len) * seq_len
    out = []
    for stream in (inputs, targets):
        flat = np.zeros(batch_size * row_length, np.int32)
        flat[:total] = stream
        rows = np.zeros((batch_size, width), np.int32)  # (batch, chunks * seq_len)
        rows[:, :row_length] = flat.reshape(batch_size, row_length)
        out.append(rows)
    return out[0], out[1]


def contiguous_batches(
    inputs: np.ndarray, targets: np.ndarray, batch_size: int, seq_len: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches of `contiguous_layout`, in order: `[(inputs, targets)]`, each `(batch, seq_len)`."""
    rows_in, rows_out = contiguous_layout(inputs, targets, batch_size, seq_len)
    return [
        (rows_in[:, k : k + seq_len], rows_out[:, k : k + seq_len])
        for k in range(0, rows_in.shape[1], seq_len)
    ]


def _stream_dataset(
    corpus: Corpus,
    batch_size: int,
    seq_len: int,
    carry_state: bool,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
) -> tf.data.Dataset:
    rows_in, rows_out = contiguous_layout(corpus.inputs[0], corpus.targets[0], batch_size, seq_len)
    if carry_state:
        chunks = rows_in.shape[1] // seq_len
        # (chunks, batch, seq_len): batch k is chunk k of every row.
        x = rows_in.reshape(batch_size, chunks, seq_len).transpose(1, 0, 2)
        y = rows_out.reshape(batch_size, chunks, seq_len).transpose(1, 0, 2)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
    else:
        # Independent windows: (windows, seq_len), without the all-padding ones.
        x = rows_in.reshape(-1, seq_len)
        y = rows_out.reshape(-1, seq_len)
        keep = np.any(y != PAD_ID, axis=1)
        dataset = tf.data.Dataset.from_tensor_slices((x[keep], y[keep])).cache()
        if shuffle:
            dataset = dataset.shuffle(int(keep.sum()), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(
            batch_size, drop_remainder=static_shapes
        )  # static: (batch, seq_len)
    return dataset.prefetch(2).with_options(data_lib.pipeline_options())


def _chunk_rows(corpus: Corpus, seq_len: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Lines longer than `seq_len` are split into consecutive windows (no token lost)."""
    inputs, targets = [], []
    for x, y in zip(corpus.inputs, corpus.targets, strict=False):
        for start in range(0, len(x), seq_len):
            inputs.append(x[start : start + seq_len])
            targets.append(y[start : start + seq_len])
    return inputs, targets


def _lines_dataset(
    corpus: Corpus,
    batch_size: int,
    seq_len: int,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
) -> tf.data.Dataset:
    inputs, targets = _chunk_rows(corpus, seq_len)
    lengths = np.array([len(x) for x in inputs], np.int64)
    splits = np.concatenate([[0], np.cumsum(lengths)])
    flat_in = tf.constant(np.concatenate(inputs))
    flat_out = tf.constant(np.concatenate(targets))
    splits_t = tf.constant(splits)

    def row(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        begin, end = splits_t[index], splits_t[index + 1]
        return flat_in[begin:end], flat_out[begin:end]

    dataset = tf.data.Dataset.range(len(inputs)).map(row).cache()
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    if static_shapes:  # every batch (batch_size, seq_len), remainder dropped (TPU / XLA)
        dataset = dataset.padded_batch(
            batch_size, padded_shapes=([seq_len], [seq_len]), drop_remainder=True
        )
        return dataset.prefetch(2).with_options(data_lib.pipeline_options())
    boundaries = data_lib.bucket_boundaries(seq_len)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.shape(x)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], [None]),
    )
    return dataset.prefetch(2).with_options(data_lib.pipeline_options())


class ResetStates(keras.callbacks.Callback):
    """Zero carried states at every epoch and before every validation pass."""

    def _reset(self) -> None:
        for layer in self.model.layers:
            if isinstance(layer, RNNStack):
                layer.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()

    def on_test_end(self, logs=None):
        self._reset()


def load_datasets(config: LanguageModelConfig, run_dir: str | os.PathLike) -> fit_lib.TaskData:
    """Read the corpus, learn (or reload) the tokenizer, build the pipelines."""
    run_dir = Path(run_dir)
    data, training = config.data, config.training
    if not data.train:
        raise DataError("no training data: pass --train PATH (or set data.train in the config)")
    text = read_corpus_text(data.train, data.encoding, "--train")
    report: list[str] = []
    if data.valid:
        valid_text = read_corpus_text(data.valid, data.encoding, "--valid")
        valid_source = data.valid
    else:
        if data.layout == "lines":
            lines = text.splitlines(keepends=True)
            cut = len(lines) - max(1, int(round(len(lines) * data.validation_split)))
            text, valid_text = "".join(lines[:cut]), "".join(lines[cut:])
        else:
            cut = len(text) - max(1, int(round(len(text) * data.validation_split)))
            text, valid_text = text[:cut], text[cut:]
        valid_source = "held-out"
        report.append(f"validation: the last {data.validation_split:.0%} of {data.train}")
    if (run_dir / "vocab.txt").exists():
        tokenizer = Tokenizer.load(run_dir)
    else:
        pieces = text.splitlines(keepends=data.layout == "continuous")
        tokenizer = build_tokenizer(config.tokenizer, pieces, run_dir)
    train = encode_corpus(tokenizer, text, data.layout)
    valid = encode_corpus(tokenizer, valid_text, data.layout)
    if data.layout == "continuous" and train.num_tokens <= data.seq_len:
        raise DataError(
            f"{data.train}: {train.num_tokens} tokens, shorter than one training sequence "
            f"(--seq-len {data.seq_len}); pass more text or a smaller --seq-len"
        )
    if train.num_tokens == 0:
        raise DataError(f"{data.train}: no tokens to train on (--train)")
    for name, corpus in (("train", train), (valid_source, valid)):
        if corpus.skipped_empty:
            report.append(f"{name}: skipped {corpus.skipped_empty} empty line(s)")
    report.append(
        f"data: {train.num_tokens} training / {valid.num_tokens} validation tokens "
        f"({data.layout}); vocabulary {tokenizer.vocabulary_size} ({tokenizer.kind}); "
        f"validation unknown-token rate {valid.unknown / max(1, valid.num_tokens):.2%}"
    )
    batch_size = training.batch_size
    if data.layout == "continuous":
        train_dataset = _stream_dataset(
            train,
            batch_size,
            data.seq_len,
            data.carry_state,
            True,
            training.seed,
            training.static_shapes,
        )
        # Same rows as training: a stateful model has a fixed batch size.
        valid_dataset = _stream_dataset(
            valid,
            batch_size,
            data.seq_len,
            data.carry_state,
            False,
            training.seed,
            training.static_shapes,
        )
        steps = (
            math.ceil(math.ceil(train.num_tokens / batch_size) / data.seq_len)
            if data.carry_state
            else math.ceil(train.num_tokens / data.seq_len / batch_size)
        )
    else:
        train_dataset = _lines_dataset(
            train, batch_size, data.seq_len, True, training.seed, training.static_shapes
        )
        valid_dataset = _lines_dataset(
            valid, batch_size, data.seq_len, False, training.seed, training.static_shapes
        )
        steps = math.ceil(len(_chunk_rows(train, data.seq_len)[0]) / batch_size)
        report.append(
            f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions"
        )
    if data.carry_state:
        report.append(
            f"batching: {batch_size} contiguous rows, states carried across {steps} batches of {data.seq_len} steps"
        )
    return fit_lib.TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=tokenizer,
        model_arguments={"stateful": data.carry_state},
        steps_per_epoch=steps,
        callbacks=[ResetStates()] if data.carry_state else [],
        report=report,
    )


# ----------------------------------------------------------------------------- model


def build_model(
    config: LanguageModelConfig,
    tokenizer: Tokenizer,
    total_steps: int | None = None,
    compile: bool = True,
    stateful: bool = False,
) -> keras.Model:
    """Embedding -> RNNStack -> logits `(batch, time, vocabulary)`; compiled unless `compile=False`.

    `stateful` (training with `data.carry_state`) fixes the batch size and
    keeps the states between batches; inference always builds the stateless
    model, which loads the same weights.
    """
    model_config, stack = config.model, config.model.stack
    if stateful:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            raise ConfigError(
                f"data.carry_state needs one replica, the strategy has {replicas}; set it false"
            )
        token_ids = keras.Input(
            batch_shape=(config.training.batch_size, None), dtype="int32", name="token_ids"
        )
    else:
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")  # (batch, time)
    embedding = ReversibleEmbedding(
        tokenizer.vocabulary_size,
        model_config.embedding_dim,
        tied=model_config.tie_embeddings,
        mask_zero=True,
        name="embedding",
    )
    x = embedding(token_ids)  # (batch, time, embedding_dim)
    if model_config.embedding_dropout:
        x = keras.layers.Dropout(model_config.embedding_dropout, name="embedding_dropout")(x)
    outputs = RNNStack(
        cell=stack.cell,
        num_layers=stack.num_layers,
        units=stack.units,
        dropout=stack.dropout,
        residual=stack.residual,
        return_sequences=True,
        return_state=True,
        stateful=stateful,
        name="rnn_stack",
    )(x)
    x = outputs[0]  # (batch, time, units)
    if model_config.output_dropout:
        x = keras.layers.Dropout(model_config.output_dropout, name="output_dropout")(x)
    if model_config.tie_embeddings:
        if stack.units != model_config.embedding_dim:
            x = keras.layers.Dense(model_config.embedding_dim, name="projection")(x)
        logits = embedding(x, reverse=True)  # (batch, time, vocabulary)
    else:
        logits = keras.layers.Dense(tokenizer.vocabulary_size, dtype="float32", name="logits")(x)
    model = keras.Model(token_ids, logits, name="language_model")
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=optimizer_lib.jit_compile_flag(config.training),
    )
    return model


class LanguageModel(tf.Module):
    """The trained layers, wired for inference: sequence scoring and one-step decoding.

    Args:
        model: a (stateless) model from `build_model`.
        tokenizer: its tokenizer.
        continuous: the corpus layout was `continuous` (no `[EOS]` to stop at).
    """

    def __init__(
        self, model: keras.Model, tokenizer: Tokenizer, continuous: bool, jit_compile: bool = True
    ):
        super().__init__(name="language_model")
        self.model = model
        self.tokenizer = tokenizer
        self.continuous = continuous
        self.embedding = model.get_layer("embedding")
        self.stack: RNNStack = model.get_layer("rnn_stack")
        self.projection = _maybe_layer(model, "projection")
        self.output_layer = _maybe_layer(model, "logits")
        self.vocabulary_size = tokenizer.vocabulary_size
        self.num_states = self.stack.states_per_layer * self.stack.num_layers
        # Never generated: padding, unknown (its text is a placeholder), start; [EOS] without lines.
        banned = [PAD_ID, UNK_ID, BOS_ID] + ([EOS_ID] if continuous else [])
        self.banned = tf.constant(np.isin(np.arange(self.vocabulary_size), banned))  # (vocab,) bool
        self._decode = tf.function(
            self._decode_loop, jit_compile=jit_compile, reduce_retracing=True
        )

    # -- pieces ---------------------------------------------------------------------

    def logits(self, features: tf.Tensor) -> tf.Tensor:
        """Features `(..., units)` -> float32 logits `(..., vocabulary)`."""
        if self.output_layer is not None:
            return tf.cast(self.output_layer(features), tf.float32)
        if self.projection is not None:
            features = self.projection(features)
        return tf.cast(self.embedding(features, reverse=True), tf.float32)

    def zero_states(self, batch: tf.Tensor) -> list[tf.Tensor]:
        return [
            tf.zeros([batch, self.stack.units], self.stack.compute_dtype)
            for _ in range(self.num_states)
        ]

    def pack(self, states: list[tf.Tensor]) -> tf.Tensor:
        return tf.cast(tf.stack(states, axis=1), tf.float32)  # (batch, num_states, units)

    def unpack(self, states: tf.Tensor) -> list[tf.Tensor]:
        return [
            tf.cast(s, self.stack.compute_dtype)
            for s in tf.unstack(states, num=self.num_states, axis=1)
        ]

    def run(self, ids: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Ids `(batch, time)` (0 = padding, skipped) from `states` -> logits `(batch, time, vocabulary)`, final states."""
        x = self.embedding(ids)  # (batch, time, embedding_dim)
        mask = tf.not_equal(ids, PAD_ID)
        outputs = self.stack(x, mask=mask, initial_state=states, training=False)
        return self.logits(outputs[0]), list(outputs[1:])

    def step(
        self, token_ids: tf.Tensor, states: list[tf.Tensor]
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Token ids `(batch,)` -> next-token logits `(batch, vocabulary)`, new states."""
        x = tf.identity(self.embedding(token_ids))  # (batch, embedding_dim), no Keras mask
        output, states = self.stack.step(x, states)
        return self.logits(output), states

    # -- generation -----------------------------------------------------------------

    def prompt_ids(self, prompt: tf.Tensor) -> tf.Tensor:
        """Prompts `tf.string [batch]` -> `[BOS] tokens`, `int32 (batch, time)` right-padded."""
        ids = tf.cast(self.tokenizer.tokenize(prompt), tf.int32)
        bos = tf.fill([tf.shape(prompt)[0], 1], tf.constant(BOS_ID, tf.int32))
        return tf.concat([bos, ids], axis=1).to_tensor(default_value=PAD_ID)

    def prime(self, prompt: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Consume the prompts once: logits for the first new token `(batch, vocabulary)`, states."""
        ids = self.prompt_ids(prompt)  # (batch, time)
        batch = tf.shape(ids)[0]
        logits, states = self.run(ids, self.zero_states(batch))
        last = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1) - 1  # (batch,)
        return tf.gather(logits, last, axis=1, batch_dims=1), states

    def _decode_loop(self, logits, states, capacity, max_tokens, temperature, top_k, top_p, seed):
        # XLA compiles once per (batch size, capacity): capacity is max_tokens rounded
        # up to a power of two, so a new max_tokens rarely means a new compilation.
        batch = tf.shape(logits)[0]
        tokens = tf.TensorArray(tf.int32, size=capacity, element_shape=[None])

        def keep_going(t, logits, states, finished, tokens):
            return tf.logical_and(t < max_tokens, tf.logical_not(tf.reduce_all(finished)))

        def body(t, logits, states, finished, tokens):
            token = sampling.sample_logits(
                logits, temperature, top_k, top_p, sampling.step_seed(seed, t), banned=self.banned
            )  # (batch,)
            token = tf.where(finished, tf.constant(PAD_ID, tf.int32), token)
            tokens = tokens.write(t, token)
            finished = tf.logical_or(finished, tf.equal(token, EOS_ID))
            logits, states = self.step(token, states)
            return t + 1, logits, states, finished, tokens

        t0 = tf.constant(0, tf.int32)
        finished = tf.zeros([batch], tf.bool)
        t, _, _, _, tokens = tf.while_loop(
            keep_going, body, (t0, logits, states, finished, tokens), maximum_iterations=max_tokens
        )
        # Slots past t stay 0 (padding); the caller trims to t outside XLA.
        return tf.transpose(tokens.stack()), t  # (batch, max_tokens), ()

    def generate_ids(self, prompt, max_tokens, temperature, top_k, top_p, seed) -> tf.Tensor:
        """Prompts `[batch]` -> generated ids `int32 (batch, tokens)`, 0 after `[EOS]`."""
        checks = sampling.assert_sampling_options(
            max_tokens, temperature, top_k, top_p, self.vocabulary_size
        )
        with tf.control_dependencies(checks):
            logits, states = self.prime(prompt)
        capacity = tf.cast(
            tf.pow(
                2.0,
                tf.math.ceil(
                    tf.math.log(tf.cast(tf.maximum(max_tokens, 1), tf.float32)) / math.log(2.0)
                ),
            ),
            tf.int32,
        )
        capacity = tf.maximum(capacity, max_tokens)  # guard against float rounding
        tokens, t = self._decode(
            logits, states, capacity, max_tokens, temperature, top_k, top_p, seed
        )
        return tokens[:, :t]

    def generate(self, prompt, max_tokens, temperature, top_k, top_p, seed) -> dict[str, tf.Tensor]:
        ids = self.generate_ids(prompt, max_tokens, temperature, top_k, top_p, seed)
        lengths = tf.reduce_sum(
            tf.cast(tf.logical_and(ids != PAD_ID, ids != EOS_ID), tf.int32), axis=1
        )
        return {"text": self.tokenizer.detokenize(ids), "num_tokens": lengths}

    # -- scoring --------------------------------------------------------------------

    def score(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per line: log-likelihood (nats), perplexity and the number of tokens predicted."""
        ids = tf.cast(self.tokenizer.tokenize(text), tf.int32)
        batch = tf.shape(text)[0]
        bos = tf.fill([batch, 1], tf.constant(BOS_ID, tf.int32))
        inputs = tf.concat([bos, ids], axis=1)
        targets = ids
        if not self.continuous:
            targets = tf.concat([ids, tf.fill([batch, 1], tf.constant(EOS_ID, tf.int32))], axis=1)
        else:
            inputs = inputs[:, :-1]
        inputs = inputs.to_tensor(default_value=PAD_ID)  # (batch, time)
        targets = targets.to_tensor(default_value=PAD_ID, shape=tf.shape(inputs))
        logits, _ = self.run(inputs, self.zero_states(batch))  # (batch, time, vocabulary)
        weights = tf.cast(targets != PAD_ID, tf.float32)
        nll = (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits) * weights
        )
        log_likelihood = -tf.reduce_sum(nll, axis=1)
        count = tf.reduce_sum(weights, axis=1)
        return {
            "log_likelihood": log_likelihood,
            "perplexity": tf.exp(tf.math.divide_no_nan(-log_likelihood, count)),
            "num_tokens": tf.cast(count, tf.int32),
        }

    def chunk_loss(self, inputs: tf.Tensor, targets: tf.Tensor, states: list[tf.Tensor]):
        """Summed nats and token count of one `(batch, time)` chunk, carrying `states`."""
        logits, states = self.run(inputs, states)
        weights = tf.cast(targets != PAD_ID, tf.float32)
        nll = (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits) * weights
        )
        return tf.reduce_sum(nll), tf.reduce_sum(weights), states


def _maybe_layer(model: keras.Model, name: str) -> keras.layers.Layer | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def load_run(run_dir: str | os.PathLike) -> tuple[LanguageModelConfig, Tokenizer, keras.Model]:
    """Rebuild a trained language model (stateless) from its run directory."""
    config = run_dir_lib.load_run_config(run_dir, LanguageModelConfig)
    if config.task != "language_model":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a language model")
    tokenizer = Tokenizer.load(run_dir)
    model = build_model(config, tokenizer, compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return config, tokenizer, model


# ----------------------------------------------------------------------------- serving


def serving_signatures(lm: LanguageModel) -> dict[str, Any]:
    """generate (also serving_default), score, step, tokenize, detokenize."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def generate(prompt, max_tokens, temperature, top_k, top_p, seed):
        return lm.generate(prompt, max_tokens, temperature, top_k, top_p, seed)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(text):
        return lm.score(text)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, lm.num_states, lm.stack.units], tf.float32, name="states"),
        ]
    )
    def step(token_ids, states):
        logits, new_states = lm.step(token_ids, lm.unpack(states))
        return {"logits": logits, "states": lm.pack(new_states)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(text):
        # [BOS] + tokens, right-padded with 0; what `step` consumes to prime on a prompt.
        ids = lm.prompt_ids(text)
        return {
            "token_ids": ids,
            "lengths": tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1),
            "unknown": tf.reduce_sum(tf.cast(ids == UNK_ID, tf.int32), axis=1),
            "initial_states": tf.zeros(
                [tf.shape(text)[0], lm.num_states, lm.stack.units], tf.float32
            ),
        }

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    def detokenize(token_ids):
        return {"text": lm.tokenizer.detokenize(token_ids)}

    return {
        "serving_default": generate,
        "generate": generate,
        "score": score,
        "step": step,
        "tokenize": tokenize,
        "detokenize": detokenize,
    }


def inference_model(
    config: LanguageModelConfig, tokenizer: Tokenizer, model: keras.Model
) -> LanguageModel:
    return LanguageModel(model, tokenizer, continuous=config.data.layout == "continuous")


def export_parts(
    config: LanguageModelConfig, tokenizer: Tokenizer, model: keras.Model
) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """(signatures, resources to track, manifest) for `textrnn.export`."""
    lm = inference_model(config, tokenizer, model)
    signatures = serving_signatures(lm)
    manifest = {
        "layout": config.data.layout,
        "tokenizer": tokenizer.settings(),
        "num_states": lm.num_states,
        "units": config.model.stack.units,
        "max_tokens_cap": MAX_TOKENS_CAP,
        "eos_id": EOS_ID,
        "banned_ids": [int(i) for i in np.flatnonzero(lm.banned.numpy())],
    }
    return signatures, [model, tokenizer], manifest


def warmup_requests(config, tokenizer, model) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "serving_default",
            {
                "prompt": np.array([b"The ", b""], dtype=object),
                "max_tokens": np.int32(8),
                "temperature": np.float32(1.0),
                "top_k": np.int32(0),
                "top_p": np.float32(1.0),
                "seed": np.int64(0),
            },
        )
    ]


# ----------------------------------------------------------------------------- evaluation


def evaluate_corpus(lm: LanguageModel, corpus: Corpus, batch_size: int = 32) -> dict[str, float]:
    """Cross-entropy over every target token of `corpus` (states carried along streams)."""
    chunk = tf.function(lm.chunk_loss, reduce_retracing=True)
    total = count = 0.0
    if lm.continuous:
        stream_rows = max(1, min(batch_size, math.ceil(corpus.num_tokens / EVALUATE_SEQ_LEN)))
        states = lm.zero_states(stream_rows)
        for x, y in contiguous_batches(
            corpus.inputs[0], corpus.targets[0], stream_rows, EVALUATE_SEQ_LEN
        ):
            nats, n, states = chunk(tf.constant(x), tf.constant(y), states)
            total += float(nats)
            count += float(n)
    else:
        order = np.argsort([len(x) for x in corpus.inputs])
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(corpus.inputs[i]) for i in rows)
            x = np.zeros((len(rows), width), np.int32)
            y = np.zeros((len(rows), width), np.int32)
            for j, i in enumerate(rows):
                x[j, : len(corpus.inputs[i])] = corpus.inputs[i]
                y[j, : len(corpus.targets[i])] = corpus.targets[i]
            nats, n, _ = chunk(tf.constant(x), tf.constant(y), lm.zero_states(len(rows)))
            total += float(nats)
            count += float(n)
    nats_per_token = total / max(count, 1.0)
    return {
        "nats_per_token": nats_per_token,
        "perplexity": math.exp(nats_per_token),
        "bits_per_token": nats_per_token / math.log(2),
        "bits_per_character": total / math.log(2) / max(corpus.characters, 1),
        "tokens": int(count),
        "characters": corpus.characters,
        "unknown_tokens": corpus.unknown,
    }


def evaluate(
    run_dir: str | os.PathLike, data_path: str, encoding: str | None = None, batch_size: int = 32
) -> dict[str, Any]:
    """Nats per token, perplexity and bits per character over every token of `data_path`."""
    config, tokenizer, model = load_run(run_dir)
    text = read_corpus_text(data_path, encoding or config.data.encoding, "--data")
    corpus = encode_corpus(tokenizer, text, config.data.layout)
    if corpus.num_tokens == 0:
        raise DataError(f"{data_path}: no tokens to evaluate (--data)")
    lm = inference_model(config, tokenizer, model)
    metrics = evaluate_corpus(lm, corpus, batch_size)
    metrics.update(
        {
            "tokenizer": tokenizer.kind,
            "layout": config.data.layout,
            "skipped_empty_lines": corpus.skipped_empty,
        }
    )
    return metrics


# ----------------------------------------------------------------------------- client side


@dataclass(frozen=True)
class GenerationOptions:
    """Request-time knobs of `generate` (see `textrnn.sampling` for their meaning)."""

    max_tokens: int = 200
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None  # None: a random seed
    num_samples: int = 1

    def resolved_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        return int.from_bytes(os.urandom(4), "little")


def check_options(serving: Any, options: GenerationOptions) -> None:
    """Raise `ConfigError` naming the option when a knob is out of range for this model."""
    vocabulary_size = int(serving.manifest.get("tokenizer", {}).get("vocabulary_size", 0))
    cap = int(serving.manifest.get("max_tokens_cap", MAX_TOKENS_CAP))
    sampling.validate_sampling_options(
        options.max_tokens, options.temperature, options.top_k, options.top_p, vocabulary_size, cap
    )
    if options.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {options.num_samples}")


def count_prompt_unknown(serving: Any, prompts: list[str]) -> int:
    """How many prompt tokens map to `[UNK]` (unseen in training)."""
    if not prompts:
        return 0
    outputs = serving.signatures["tokenize"](text=tf.constant(prompts, tf.string))
    return int(tf.reduce_sum(outputs["unknown"]))


def generate_texts(
    serving: Any, prompts: list[str], options: GenerationOptions
) -> list[tuple[str, str]]:
    """`(prompt, continuation)` for each prompt and sample, rows in the order prompt-major.

    Row r of the batch (prompt r // num_samples) draws the same noise as
    `stream_tokens(..., row=r)`, so both give the same text for one seed.
    """
    rows = [p for p in prompts for _ in range(options.num_samples)]
    outputs = serving.signatures["generate"](
        prompt=tf.constant(rows, tf.string),
        max_tokens=tf.constant(options.max_tokens, tf.int32),
        temperature=tf.constant(options.temperature, tf.float32),
        top_k=tf.constant(options.top_k, tf.int32),
        top_p=tf.constant(options.top_p, tf.float32),
        seed=tf.constant(options.resolved_seed(), tf.int64),
    )
    texts = [t.decode("utf-8", errors="replace") for t in outputs["text"].numpy()]
    return list(zip(rows, texts, strict=False))


def stream_tokens(serving: Any, prompt: str, options: GenerationOptions, row: int = 0):
    """Yield the continuation of `prompt` piece by piece through the `step` signature.

    Sampling happens here, with the same `textrnn.sampling` code and per-step
    seeds as the in-graph loop; `row` is the row this sample would have in a
    batched `generate` call (its noise depends on it).
    """
    signatures = serving.signatures
    seed = options.resolved_seed()
    primed = signatures["tokenize"](text=tf.constant([prompt], tf.string))
    ids = primed["token_ids"].numpy()[0][: int(primed["lengths"].numpy()[0])]
    states = primed["initial_states"]
    outputs = None
    for token in ids:  # consume [BOS] and the prompt
        outputs = signatures["step"](token_ids=tf.constant([token], tf.int32), states=states)
        states = outputs["states"]
    logits = outputs["logits"]  # (1, vocabulary)
    vocabulary = int(logits.shape[-1])
    banned = np.zeros([vocabulary], bool)
    banned[serving.manifest.get("banned_ids", [PAD_ID, BOS_ID])] = True
    generated: list[int] = []
    shown = ""
    for t in range(options.max_tokens):
        token = int(
            sampling.sample_logits(
                logits,
                options.temperature,
                options.top_k,
                options.top_p,
                sampling.step_seed(seed, t),
                first_row=row,  # the noise row r of a batched `generate` draws
                banned=banned,
            )[0]
        )
        if token == EOS_ID:
            return
        generated.append(token)
        text = signatures["detokenize"](token_ids=tf.constant([generated], tf.int32))[
            "text"
        ].numpy()[0]
        text = text.decode("utf-8", errors="replace")
        if text.startswith(shown):
            piece, shown = text[len(shown) :], text
            if piece:
                yield piece
        outputs = signatures["step"](token_ids=tf.constant([token], tf.int32), states=states)
        logits, states = outputs["logits"], outputs["states"]
