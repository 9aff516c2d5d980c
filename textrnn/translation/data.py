"""Translation data: aligned sentence pairs, the two vocabularies, teacher-forcing pipelines.

    read_pairs         two line-aligned files or one table -> `Pairs` (empty pairs counted)
    build_tokenizers   learn source / target vocabularies (or one joint one) into the run
    load_tokenizers    the (source, target) tokenizers saved in a run directory
    encode_pairs       both sides -> ragged ids, truncated (and counted), target in [BOS] ... [EOS]
    load_datasets      all of the above for training: `(config, run_dir) -> TaskData`

Run directory: `source/` and `target/` hold each language's `tokenizer.json`
and `vocab.txt` (identical copies when `tokenizer.joint`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from textrnn import data as data_lib
from textrnn.errors import DataError, RunDirError
from textrnn.tokenizers import (
    BOS_ID,
    EOS_ID,
    Tokenizer,
    count_unknown,
    encode_texts,
    learn_vocabulary,
    save_tokenizer_files,
)
from textrnn.training.fit import TaskData
from textrnn.translation.config import TranslationConfig

SOURCE_DIR, TARGET_DIR = "source", "target"
RUN_FILES = (SOURCE_DIR, TARGET_DIR)  # what the task writes in a run directory

TRAIN_OPTIONS = ("--source", "--target", "--train")
VALID_OPTIONS = ("--valid-source", "--valid-target", "--valid")


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
    options: tuple[str, str, str] = TRAIN_OPTIONS,
    split: str = "train",
) -> Pairs:
    """Read aligned pairs from two line-aligned files or from one table.

    Pairs with an empty side are skipped and counted (a note says how many);
    `options` are the flags named in error messages.
    """
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
                f"no {missing} file: pass both {source_option} and {target_option} "
                f"(or {table_option} with a table)"
            )
        sources = data_lib.read_lines(source, encoding, source_option)
        targets = data_lib.read_lines(target, encoding, target_option)
        if len(sources) != len(targets):
            raise DataError(
                f"{source} has {len(sources)} lines but {target} has {len(targets)}; "
                f"{source_option} and {target_option} must be aligned line by line"
            )
        where = f"{source} / {target}"
    return _non_empty_pairs(sources, targets, where)


def _non_empty_pairs(sources: list, targets: list, where: str) -> Pairs:
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


# ----------------------------------------------------------------------------- tokenizers


def build_tokenizers(
    config: TranslationConfig, run_dir: Path, pairs: Pairs
) -> tuple[Tokenizer, Tokenizer]:
    """Learn source and target vocabularies (or one joint one); save them in the run directory."""
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
            f"{run_dir}: missing source/ or target/ vocabulary; "
            "is this a translation run directory?"
        )
    return Tokenizer.load(run_dir / SOURCE_DIR), Tokenizer.load(run_dir / TARGET_DIR)


def load_or_build_tokenizers(
    config: TranslationConfig, run_dir: Path, train: Pairs
) -> tuple[Tokenizer, Tokenizer]:
    """A resumed run keeps its vocabularies (its weights index them); a new one learns them."""
    if (run_dir / TARGET_DIR / "vocab.txt").exists():
        return load_tokenizers(run_dir)
    return build_tokenizers(config, run_dir, train)


# ----------------------------------------------------------------------------- encoding


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
    # One token over the limit is enough to tell that a sentence was cut.
    source = encode_texts(source_tokenizer, pairs.sources, source_max + 1)
    target = encode_texts(target_tokenizer, pairs.targets, target_max - 1)
    source_truncated = int(tf.reduce_sum(tf.cast(source.row_lengths() > source_max, tf.int32)))
    target_truncated = int(tf.reduce_sum(tf.cast(target.row_lengths() > target_max - 2, tf.int32)))
    source = source[:, :source_max]
    target = target[:, : target_max - 2]  # room for [BOS] and [EOS]
    rows = target.nrows()
    bos = tf.fill([rows, 1], tf.constant(BOS_ID, target.dtype))
    eos = tf.fill([rows, 1], tf.constant(EOS_ID, target.dtype))
    target = tf.concat([bos, target, eos], axis=1)
    return EncodedPairs(source, target, source_truncated, target_truncated)


# ----------------------------------------------------------------------------- training data


def load_datasets(config: TranslationConfig, run_dir: str | os.PathLike) -> TaskData:
    """Read the pairs, learn (or reload) the vocabularies, build the teacher-forcing pipelines."""
    run_dir = Path(run_dir)
    train, valid, report = read_training_pairs(config)
    source_tokenizer, target_tokenizer = load_or_build_tokenizers(config, run_dir, train)
    train_encoded = encode_pairs(source_tokenizer, target_tokenizer, train, config)
    valid_encoded = encode_pairs(source_tokenizer, target_tokenizer, valid, config)
    report += truncation_notes(config, train_encoded, valid_encoded)
    report.append(
        data_summary(config, (source_tokenizer, target_tokenizer), train_encoded, valid_encoded)
    )
    train_dataset, valid_dataset = pipelines(config, train_encoded, valid_encoded)
    report.append(
        f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions "
        "(source and target)"
    )
    return TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=(source_tokenizer, target_tokenizer),
        steps_per_epoch=math.ceil(len(train.sources) / config.training.batch_size),
        report=report,
    )


def read_training_pairs(config: TranslationConfig) -> tuple[Pairs, Pairs, list[str]]:
    """(training, validation, report lines): validation from its own files, or held out."""
    data = config.data
    if not (data.train or data.source or data.target):
        raise DataError("no training data: pass --source FILE --target FILE (or --train TABLE)")
    columns = (data.source_column, data.target_column, data.encoding)
    train = read_pairs(data.source, data.target, data.train, *columns, TRAIN_OPTIONS)
    report = list(train.notes)
    if data.valid or data.valid_source or data.valid_target:
        valid = read_pairs(
            data.valid_source,
            data.valid_target,
            data.valid,
            *columns,
            VALID_OPTIONS,
            split="validation",
        )
        return train, valid, report + valid.notes
    train, valid, note = hold_out(config, train)
    return train, valid, [*report, note]


def hold_out(config: TranslationConfig, train: Pairs) -> tuple[Pairs, Pairs, str]:
    """Split `data.validation_split` of the training pairs off (seeded) as validation data."""
    if len(train.sources) < 2:
        raise DataError(
            f"{train.where}: need at least 2 pairs to hold out validation data; "
            "pass --valid-source/--valid-target"
        )
    seed = config.training.seed
    held, kept = data_lib.holdout_split(len(train.sources), config.data.validation_split, seed)
    valid = Pairs(
        [train.sources[i] for i in held], [train.targets[i] for i in held], where="held-out"
    )
    kept_pairs = Pairs(
        [train.sources[i] for i in kept], [train.targets[i] for i in kept], where=train.where
    )
    note = (
        f"validation: held out {len(held)} of {len(held) + len(kept)} training pairs (seed {seed})"
    )
    return kept_pairs, valid, note


def truncation_notes(
    config: TranslationConfig, train: EncodedPairs, valid: EncodedPairs
) -> list[str]:
    """One line per split that had sentences cut to the maximum lengths."""
    data = config.data
    notes = []
    for name, encoded in (("training", train), ("validation", valid)):
        if encoded.source_truncated or encoded.target_truncated:
            notes.append(
                f"{name}: truncated {encoded.source_truncated} source sentence(s) to "
                f"{data.source_max_length} tokens and {encoded.target_truncated} target "
                f"sentence(s) to {data.target_max_length} "
                "(data.source_max_length / data.target_max_length)"
            )
    return notes


def data_summary(
    config: TranslationConfig,
    tokenizers: tuple[Tokenizer, Tokenizer],
    train: EncodedPairs,
    valid: EncodedPairs,
) -> str:
    """Pairs, vocabulary sizes, training target tokens and validation unknown-token rates."""
    source_tokenizer, target_tokenizer = tokenizers
    train_pairs = int(train.source_ids.nrows())
    valid_pairs = int(valid.source_ids.nrows())
    unknown_source = count_unknown(valid.source_ids) / max(
        1, int(tf.size(valid.source_ids.flat_values))
    )
    unknown_target = count_unknown(valid.target_ids) / max(
        1, int(tf.size(valid.target_ids.flat_values))
    )
    target_tokens = int(tf.size(train.target_ids.flat_values)) - train_pairs
    return (
        f"data: {train_pairs} training / {valid_pairs} validation pairs; vocabulary "
        f"{source_tokenizer.vocabulary_size} source / {target_tokenizer.vocabulary_size} target "
        f"({source_tokenizer.kind}{', joint' if config.tokenizer.joint else ''}); "
        f"{target_tokens} training target tokens; validation unknown-token rate "
        f"{unknown_source:.1%} source / {unknown_target:.1%} target"
    )


def pipelines(
    config: TranslationConfig, train: EncodedPairs, valid: EncodedPairs
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Teacher-forcing batches (`data.batched_pairs`); only training shuffles."""
    training = config.training
    longest = max(config.data.source_max_length, config.data.target_max_length)
    train_dataset = data_lib.batched_pairs(
        train.source_ids,
        train.target_ids,
        training.batch_size,
        longest,
        shuffle=True,
        seed=training.seed,
        static_shapes=training.static_shapes,
        shuffle_buffer=training.shuffle_buffer,
    )
    valid_dataset = data_lib.batched_pairs(
        valid.source_ids,
        valid.target_ids,
        training.batch_size,
        longest,
        shuffle=False,
        seed=training.seed,
        static_shapes=training.static_shapes,
    )
    return train_dataset, valid_dataset
