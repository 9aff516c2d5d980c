"""Sentiment data: labelled rows in, batched `tf.data` pipelines out.

`load_datasets` goes through named steps: read the training and validation
rows (counting bad ones), learn or reload the labels and the tokenizer in the
run directory, keep the rows whose labels the run knows, encode, report, build
the pipelines and the class weights.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn.errors import DataError, RunDirError
from textrnn.fileio import atomic_write_text
from textrnn.sentiment.config import SentimentConfig, SentimentDataConfig
from textrnn.sentiment.transfer import copy_tokenizer
from textrnn.tokenizers import (
    VOCABULARY_FILE,
    Tokenizer,
    build_tokenizer,
    count_unknown,
    encode_texts,
)
from textrnn.training import fit as fit_lib
from textrnn.training import run_dir as run_dir_lib

LABELS_FILE = "labels.json"


# ----------------------------------------------------------------------------- rows


@dataclass
class Examples:
    texts: list[str]
    labels: list[str]  # raw label values as strings
    skipped_empty: int = 0
    skipped_unlabeled: int = 0
    source: str = ""


def _label_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def read_examples(
    source: str,
    text_column: str,
    label_column: str,
    encoding: str = "utf-8",
    option: str = "--train",
    require_labels: bool = True,
    split: str = "train",
) -> Examples:
    """Read (text, label) rows from a file or hub data set; count bad rows.

    Text files (`.txt` or no known suffix) hold one example a line as
    `LABEL TEXT` (the SST / fastText layout; a `__label__` prefix is dropped).
    """
    table = data_lib.load_table(source, encoding=encoding, option=option, split=split)
    if table.column_names == ["text"] and label_column != "text":  # a plain text file
        texts, labels = [], []
        for line in table["text"]:
            label, _, text = line.strip().partition(" ")
            labels.append(label.removeprefix("__label__"))
            texts.append(text)
    else:
        columns = {"--text-column": text_column}
        if require_labels:
            columns["--label-column"] = label_column
        data_lib.require_columns(table, columns, source)
        texts = table[text_column]
        labels = table[label_column] if label_column in table.column_names else [None] * len(texts)
    examples = Examples([], [], source=source)
    for text, label in zip(texts, labels, strict=True):
        if not isinstance(text, str) or not text.strip():
            examples.skipped_empty += 1
            continue
        label_text = _label_string(label)
        if label_text is None and require_labels:
            examples.skipped_unlabeled += 1
            continue
        examples.texts.append(text)
        examples.labels.append(label_text or "")
    if require_labels and not examples.texts:
        raise DataError(
            f"{source}: no usable rows (empty text: {examples.skipped_empty}, "
            f"missing label: {examples.skipped_unlabeled}) ({option})"
        )
    return examples


def describe_skipped(examples: Examples) -> list[str]:
    lines = []
    if examples.skipped_empty:
        lines.append(f"{examples.source}: skipped {examples.skipped_empty} row(s) with empty text")
    if examples.skipped_unlabeled:
        lines.append(
            f"{examples.source}: skipped {examples.skipped_unlabeled} row(s) without a label"
        )
    return lines


def read_splits(config: SentimentConfig) -> tuple[Examples, Examples, list[str]]:
    """Training and validation rows (`--valid`, or held out of `--train`), and report lines."""
    data = config.data
    train = read_examples(data.train, data.text_column, data.label_column, data.encoding, "--train")
    report = describe_skipped(train)
    if not data.valid:
        train, valid, line = hold_out(train, data, config.training.seed)
        return train, valid, [*report, line]
    valid = read_examples(
        data.valid,
        data.valid_text_column or data.text_column,
        data.valid_label_column or data.label_column,
        data.encoding,
        "--valid",
        split="validation",
    )
    return train, valid, [*report, *describe_skipped(valid)]


def hold_out(
    train: Examples, data: SentimentDataConfig, seed: int
) -> tuple[Examples, Examples, str]:
    """Split `data.validation_split` of the training rows off for validation (seeded)."""
    if len(train.texts) < 2:
        raise DataError(
            f"{data.train}: need at least 2 rows to hold out validation data; pass --valid"
        )
    held, kept = data_lib.holdout_split(len(train.texts), data.validation_split, seed)
    valid = Examples(
        [train.texts[i] for i in held], [train.labels[i] for i in held], source="held-out"
    )
    train = Examples(
        [train.texts[i] for i in kept], [train.labels[i] for i in kept], source=train.source
    )
    line = (
        f"validation: held out {len(held)} of {len(held) + len(kept)} training rows (seed {seed})"
    )
    return train, valid, line


# ----------------------------------------------------------------------------- labels


def sort_labels(values: set[str]) -> list[str]:
    """Numeric labels in numeric order, others alphabetically."""
    try:
        return sorted(values, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(values)


@dataclass(frozen=True)
class Labels:
    """The classes of a run: `labels.json` in its run directory.

    Args:
        values: raw label values as found in the data; index = class id.
        names: display names (`data.label_names`, else the values).
    """

    values: tuple[str, ...]
    names: tuple[str, ...]

    def index(self) -> dict[str, int]:
        mapping = {value: i for i, value in enumerate(self.values)}
        mapping.update({name: i for i, name in enumerate(self.names)})
        return mapping

    def save(self, run_dir: Path) -> None:
        atomic_write_text(
            run_dir / LABELS_FILE,
            json.dumps({"values": self.values, "names": self.names}, indent=2) + "\n",
        )

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Labels:
        path = Path(run_dir) / LABELS_FILE
        saved = run_dir_lib.read_json(path, "labels")
        values = saved.get("values") if isinstance(saved, dict) else None
        names = saved.get("names") if isinstance(saved, dict) else None
        if not (
            isinstance(values, list) and isinstance(names, list) and len(values) == len(names) >= 2
        ):
            raise RunDirError(
                f"{path}: corrupt labels (want equally long 'values' and 'names' lists "
                "of two or more); retrain with --restart"
            )
        return cls(tuple(map(str, values)), tuple(map(str, names)))


def describe_labels(counts: Counter, most: int = 5) -> str:
    """The most common labels with their counts: "'neg' (120), 'pos' (98)"."""
    shown = ", ".join(f"{label!r} ({count})" for label, count in counts.most_common(most))
    return shown + (f" and {len(counts) - most} more" if len(counts) > most else "")


def labels_to_ids(examples: Examples, labels: Labels) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Map label strings to class ids; unknown labels are returned separately, counted."""
    index = labels.index()
    keep, ids, unknown = [], [], Counter()
    for position, label in enumerate(examples.labels):
        if label in index:
            keep.append(position)
            ids.append(index[label])
        else:
            unknown[label] += 1
    return np.array(keep, dtype=np.int64), np.array(ids, dtype=np.int32), unknown


def learn_labels(data: SentimentDataConfig, train: Examples, run_dir: Path) -> Labels:
    """The run's labels: reloaded when resuming, else learned from `train` and saved."""
    if (run_dir / LABELS_FILE).exists():
        return Labels.load(run_dir)
    values = sort_labels(set(train.labels))
    if len(values) < 2:
        raise DataError(
            f"{data.train}: found only one label ({values[0]!r}); a classifier needs two or more"
        )
    labels = Labels(tuple(values), tuple(data.label_names.get(v, v) for v in values))
    labels.save(run_dir)
    return labels


@dataclass(frozen=True)
class LabelledTexts:
    """The rows of one split whose labels the run knows: texts and class ids."""

    texts: list[str]
    ids: np.ndarray  # (rows,) int32


def keep_known_labels(
    train: Examples, valid: Examples, labels: Labels, data: SentimentDataConfig, run_dir: Path
) -> tuple[LabelledTexts, LabelledTexts, list[str]]:
    """Drop (and report) rows whose labels the run does not know; none left is an error."""
    report = []
    train_keep, train_ids, train_unknown = labels_to_ids(train, labels)
    if not len(train_keep):  # only when resuming with new data
        raise DataError(
            f"{data.train}: none of its labels ({describe_labels(train_unknown)}) are among the "
            f"labels this run was first trained on ({', '.join(map(repr, labels.values))}, in "
            f"{run_dir / LABELS_FILE}); pass --restart to train on the new labels"
        )
    if train_unknown:
        report.append(
            f"{data.train}: {sum(train_unknown.values())} row(s) with labels unseen at first "
            "training, skipped"
        )
    valid_keep, valid_ids, valid_unknown = labels_to_ids(valid, labels)
    if not len(valid_keep):
        raise DataError(
            f"{valid.source}: none of its labels ({describe_labels(valid_unknown)}) occur in the "
            f"training data ({', '.join(map(repr, labels.values))}); check --valid and its "
            "label column (data.valid_label_column in the config)"
        )
    if valid_unknown:
        report.append(
            f"{valid.source}: skipped {sum(valid_unknown.values())} row(s) with labels not in "
            "training: " + describe_labels(valid_unknown)
        )
    return (
        LabelledTexts([train.texts[i] for i in train_keep], train_ids),
        LabelledTexts([valid.texts[i] for i in valid_keep], valid_ids),
        report,
    )


# ----------------------------------------------------------------------------- tokenizer


def learn_tokenizer(
    config: SentimentConfig, train: Examples, run_dir: Path
) -> tuple[Tokenizer, list[str]]:
    """The run's tokenizer: reloaded when resuming, the language model's with `--init-from`,
    else learned from the training texts. Its files are written to `run_dir`."""
    if (run_dir / VOCABULARY_FILE).exists():
        return Tokenizer.load(run_dir), []
    init_from = config.model.init_from
    if init_from:
        tokenizer = copy_tokenizer(init_from, run_dir)
        line = (
            f"tokenizer: the language model's ({tokenizer.kind}, "
            f"{tokenizer.vocabulary_size} tokens) from {init_from}; "
            "[tokenizer] settings are not used"
        )
        return tokenizer, [line]
    return build_tokenizer(config.tokenizer, train.texts, run_dir), []


# ----------------------------------------------------------------------------- pipelines


def describe_data(
    train: LabelledTexts,
    valid: LabelledTexts,
    valid_tokens: tf.RaggedTensor,
    labels: Labels,
    tokenizer: Tokenizer,
) -> str:
    """One report line: examples, class counts, vocabulary, validation unknown-token rate."""
    unknown_rate = count_unknown(valid_tokens) / max(1, int(tf.size(valid_tokens.flat_values)))
    counts = np.bincount(train.ids, minlength=len(labels.values))
    return (
        f"data: {len(train.ids)} training / {len(valid.ids)} validation examples; classes "
        + ", ".join(f"{n}={c}" for n, c in zip(labels.names, counts, strict=True))
        + f"; vocabulary {tokenizer.vocabulary_size} ({tokenizer.kind}); "
        f"validation unknown-token rate {unknown_rate:.1%}"
    )


def pipelines(
    config: SentimentConfig,
    train_tokens: tf.RaggedTensor,
    train_ids: np.ndarray,
    valid_tokens: tf.RaggedTensor,
    valid_ids: np.ndarray,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Batched (token ids, class id) datasets: training shuffled, validation in order."""
    training, max_length = config.training, config.data.max_length
    train_dataset = data_lib.batched_sequences(
        train_tokens,
        train_ids,
        training.batch_size,
        max_length,
        shuffle=True,
        seed=training.seed,
        static_shapes=training.static_shapes,
        shuffle_buffer=training.shuffle_buffer,
    )
    valid_dataset = data_lib.batched_sequences(
        valid_tokens,
        valid_ids,
        training.batch_size,
        max_length,
        shuffle=False,
        seed=training.seed,
        static_shapes=training.static_shapes,
    )
    return train_dataset, valid_dataset


def balanced_class_weight(ids: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency (`model.class_weight = "balanced"`)."""
    counts = np.bincount(ids, minlength=num_classes)
    total = counts.sum()
    return {i: float(total / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}


def load_datasets(config: SentimentConfig, run_dir: str | os.PathLike) -> fit_lib.TaskData:
    """Read the data, learn (or reload) tokenizer and labels, build the pipelines."""
    run_dir = Path(run_dir)
    data = config.data
    if not data.train:
        raise DataError("no training data: pass --train PATH (or set data.train in the config)")
    train_rows, valid_rows, report = read_splits(config)
    labels = learn_labels(data, train_rows, run_dir)
    tokenizer, lines = learn_tokenizer(config, train_rows, run_dir)
    report += lines
    train, valid, lines = keep_known_labels(train_rows, valid_rows, labels, data, run_dir)
    report += lines
    train_tokens = encode_texts(tokenizer, train.texts, data.max_length, data.truncate)
    valid_tokens = encode_texts(tokenizer, valid.texts, data.max_length, data.truncate)
    report.append(describe_data(train, valid, valid_tokens, labels, tokenizer))
    if len(valid.ids) == 0:
        raise DataError(f"{valid_rows.source}: no validation rows with known labels")
    train_dataset, valid_dataset = pipelines(
        config, train_tokens, train.ids, valid_tokens, valid.ids
    )
    report.append(f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions")
    class_weight = None
    if config.model.class_weight == "balanced":
        class_weight = balanced_class_weight(train.ids, len(labels.values))
    return fit_lib.TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=tokenizer,
        model_arguments={
            "num_classes": len(labels.values),
            "init_from": config.model.init_from or None,
        },
        steps_per_epoch=math.ceil(len(train.ids) / config.training.batch_size),
        class_weight=class_weight,
        monitor="val_accuracy",
        monitor_mode="max",
        report=report,
    )
