"""A language model's data: read the corpus, learn the tokenizer, encode, batch.

Two layouts (`data.layout`):

- `continuous`: the file is one token stream (a book). `[BOS]` starts it and
  the model predicts every token of the file. The stream is cut into
  `batch_size` contiguous rows (`contiguous_layout`); batch k holds columns
  `[k * seq_len, (k + 1) * seq_len)` of every row, so row r of batch k + 1
  continues row r of batch k. With `data.carry_state` the recurrent states
  flow from one batch to the next (truncated BPTT); without it, the windows
  are shuffled and each starts from zero states.
- `lines`: one sentence or document a line, `[BOS] line [EOS]`; empty lines
  are skipped and counted; lines longer than `seq_len` become consecutive
  windows.

`load_datasets(config, run_dir)` runs the steps in order: `read_splits`,
`load_or_learn_tokenizer`, `encode_splits`, `describe_corpora`, then the
layout's pipelines.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn.errors import DataError
from textrnn.language_model.config import LanguageModelConfig, LanguageModelDataConfig
from textrnn.language_model.model import ResetStates
from textrnn.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    VOCABULARY_FILE,
    Tokenizer,
    build_tokenizer,
    encode_rows,
)
from textrnn.training.fit import TaskData
from textrnn.training.transfer import copy_tokenizer


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


@dataclass
class Splits:
    """The training and validation texts, before tokenizing."""

    train: str
    valid: str
    valid_source: str  # the --valid path, or "held-out"
    report: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading


def read_corpus_text(path: str, encoding: str, option: str, text_column: str = "") -> str:
    """The whole file, rejecting binary files and bad encodings with a line naming the option.

    With `text_column` the file is a table and its rows in that column are the lines.
    """
    if text_column:
        table = data_lib.load_table(path, encoding, option)
        data_lib.require_columns(table, {"data.text_column": text_column}, path)
        text = "".join(" ".join(str(row).split()) + "\n" for row in table[text_column])
    else:
        text = data_lib.read_text(path, encoding, option)
    if not text.strip():
        raise DataError(f"{path} holds no text ({option})")
    return text


def read_splits(data: LanguageModelDataConfig) -> Splits:
    """Read `--train` and `--valid`, or hold out the end of `--train` when there is no `--valid`.

    The held-out part is the last lines (`lines`) or the last characters
    (`continuous`): the end of a book, never text from the middle of it.
    """
    if not data.train:
        raise DataError("no training data: pass --train PATH (or set data.train in the config)")
    text = read_corpus_text(data.train, data.encoding, "--train", data.text_column)
    if data.valid:
        valid = read_corpus_text(data.valid, data.encoding, "--valid", data.text_column)
        return Splits(text, valid, data.valid)
    if data.layout == "lines":
        lines = text.splitlines(keepends=True)
        cut = len(lines) - max(1, int(round(len(lines) * data.validation_split)))
        text, valid_text = "".join(lines[:cut]), "".join(lines[cut:])
    else:
        cut = len(text) - max(1, int(round(len(text) * data.validation_split)))
        text, valid_text = text[:cut], text[cut:]
    report = [f"validation: the last {data.validation_split:.0%} of {data.train}"]
    return Splits(text, valid_text, "held-out", report)


def load_or_learn_tokenizer(config: LanguageModelConfig, text: str, run_dir: Path) -> Tokenizer:
    """The run's tokenizer: reloaded when resuming, else learned from the training text."""
    if (run_dir / VOCABULARY_FILE).exists():
        return Tokenizer.load(run_dir)
    if config.model.init_from:  # fine-tuning: the ids must mean what they meant
        return copy_tokenizer(config.model.init_from, run_dir)
    # A stream keeps its newlines: they are characters (tokens) the model predicts.
    pieces = text.splitlines(keepends=config.data.layout == "continuous")
    return build_tokenizer(config.tokenizer, pieces, run_dir)


# ----------------------------------------------------------------------------- encoding


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


def encode_splits(
    data: LanguageModelDataConfig, tokenizer: Tokenizer, splits: Splits
) -> tuple[Corpus, Corpus]:
    """(train, valid) corpora; a training text too short to train on is an error."""
    train = encode_corpus(tokenizer, splits.train, data.layout)
    valid = encode_corpus(tokenizer, splits.valid, data.layout)
    if data.layout == "continuous" and train.num_tokens <= data.seq_len:
        raise DataError(
            f"{data.train}: {train.num_tokens} tokens, shorter than one training sequence "
            f"(--seq-len {data.seq_len}); pass more text or a smaller --seq-len"
        )
    if train.num_tokens == 0:
        raise DataError(f"{data.train}: no tokens to train on (--train)")
    return train, valid


def describe_corpora(
    data: LanguageModelDataConfig,
    tokenizer: Tokenizer,
    train: Corpus,
    valid: Corpus,
    valid_source: str,
) -> list[str]:
    """Report lines: skipped empty lines, token counts, vocabulary, unknown-token rate."""
    report = [
        f"{name}: skipped {corpus.skipped_empty} empty line(s)"
        for name, corpus in (("train", train), (valid_source, valid))
        if corpus.skipped_empty
    ]
    report.append(
        f"data: {train.num_tokens} training / {valid.num_tokens} validation tokens "
        f"({data.layout}); vocabulary {tokenizer.vocabulary_size} ({tokenizer.kind}); "
        f"validation unknown-token rate {valid.unknown / max(1, valid.num_tokens):.2%}"
    )
    return report


# ----------------------------------------------------------------------------- batching


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
    """The batches of `contiguous_layout`, in order: `[(inputs, targets)]`,
    each `(batch, seq_len)`."""
    rows_in, rows_out = contiguous_layout(inputs, targets, batch_size, seq_len)
    return [
        (rows_in[:, k : k + seq_len], rows_out[:, k : k + seq_len])
        for k in range(0, rows_in.shape[1], seq_len)
    ]


def stream_dataset(
    corpus: Corpus,
    batch_size: int,
    seq_len: int,
    carry_state: bool,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
) -> tf.data.Dataset:
    """A `continuous` corpus as `(inputs, targets)` batches of `(batch, seq_len)`.

    With `carry_state` the batches come in stream order (row r continues row r);
    without it the windows are independent and shuffled.
    """
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


def chunk_rows(corpus: Corpus, seq_len: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Lines longer than `seq_len` are split into consecutive windows (no token lost)."""
    inputs, targets = [], []
    for x, y in zip(corpus.inputs, corpus.targets, strict=False):
        for start in range(0, len(x), seq_len):
            inputs.append(x[start : start + seq_len])
            targets.append(y[start : start + seq_len])
    return inputs, targets


def lines_dataset(
    corpus: Corpus,
    batch_size: int,
    seq_len: int,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
) -> tf.data.Dataset:
    """A `lines` corpus as padded `(inputs, targets)` batches, bucketed by length
    (or all `(batch, seq_len)` with `static_shapes`)."""
    inputs, targets = chunk_rows(corpus, seq_len)
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


def stream_pipelines(
    config: LanguageModelConfig, train: Corpus, valid: Corpus
) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """(train, valid, steps per epoch) for the `continuous` layout."""
    data, training = config.data, config.training
    batch_size = training.batch_size
    train_dataset = stream_dataset(
        train,
        batch_size,
        data.seq_len,
        data.carry_state,
        True,
        training.seed,
        training.static_shapes,
    )
    # Same rows as training: a stateful model has a fixed batch size.
    valid_dataset = stream_dataset(
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
    return train_dataset, valid_dataset, steps


def lines_pipelines(
    config: LanguageModelConfig, train: Corpus, valid: Corpus
) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """(train, valid, steps per epoch) for the `lines` layout."""
    data, training = config.data, config.training
    batch_size = training.batch_size
    train_dataset = lines_dataset(
        train, batch_size, data.seq_len, True, training.seed, training.static_shapes
    )
    valid_dataset = lines_dataset(
        valid, batch_size, data.seq_len, False, training.seed, training.static_shapes
    )
    steps = math.ceil(len(chunk_rows(train, data.seq_len)[0]) / batch_size)
    return train_dataset, valid_dataset, steps


# ----------------------------------------------------------------------------- the task's step


def load_datasets(config: LanguageModelConfig, run_dir: str | os.PathLike) -> TaskData:
    """Read the corpus, learn (or reload) the tokenizer, build the pipelines."""
    data = config.data
    splits = read_splits(data)
    tokenizer = load_or_learn_tokenizer(config, splits.train, Path(run_dir))
    train, valid = encode_splits(data, tokenizer, splits)
    report = [*splits.report, *describe_corpora(data, tokenizer, train, valid, splits.valid_source)]
    if config.model.init_from:
        report.append(
            f"fine-tuning {config.model.init_from}: its weights and vocabulary "
            f"({tokenizer.vocabulary_size} tokens; [tokenizer] settings are not used)"
        )
    if data.layout == "continuous":
        train_dataset, valid_dataset, steps = stream_pipelines(config, train, valid)
    else:
        train_dataset, valid_dataset, steps = lines_pipelines(config, train, valid)
        report.append(
            f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions"
        )
    if data.carry_state:
        report.append(
            f"batching: {config.training.batch_size} contiguous rows, states carried across "
            f"{steps} batches of {data.seq_len} steps"
        )
    return TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=tokenizer,
        model_arguments={"stateful": data.carry_state, "init_from": config.model.init_from or None},
        steps_per_epoch=steps,
        callbacks=[ResetStates()] if data.carry_state else [],
        report=report,
    )
