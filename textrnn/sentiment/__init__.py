"""Sentiment analysis, or any text classification: many-to-one.

Model: embedding -> RNNStack -> pooling (final state, or masked max / mean
over time) -> dropout -> dense logits (float32). Labels may be integers or
strings; the label set is learned from the training data and saved in the
run directory as `labels.json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn.errors import ConfigError, DataError, RunDirError
from textrnn.fileio import atomic_write_text
from textrnn.layers.dropout import TokenDropout
from textrnn.layers.pooling import MaskedPooling
from textrnn.layers.rnn_stack import RNNStack
from textrnn.sentiment.config import SentimentConfig
from textrnn.tokenizers import UNK_ID, Tokenizer, build_tokenizer, count_unknown, encode_texts
from textrnn.training import fit as fit_lib
from textrnn.training import optimizer as optimizer_lib
from textrnn.training import run_dir as run_dir_lib

logger = logging.getLogger(__name__)

Config = SentimentConfig
LABELS_FILE = "labels.json"


# ----------------------------------------------------------------------------- data


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


def sort_labels(values: set[str]) -> list[str]:
    """Numeric labels in numeric order, others alphabetically."""
    try:
        return sorted(values, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(values)


@dataclass(frozen=True)
class Labels:
    values: tuple[str, ...]  # raw label values, index = class id
    names: tuple[str, ...]  # display names

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


def load_datasets(config: SentimentConfig, run_dir: str | os.PathLike) -> fit_lib.TaskData:
    """Read the data, learn (or reload) tokenizer and labels, build the pipelines."""
    run_dir = Path(run_dir)
    data = config.data
    if not data.train:
        raise DataError("no training data: pass --train PATH (or set data.train in the config)")
    report: list[str] = []
    train = read_examples(data.train, data.text_column, data.label_column, data.encoding, "--train")
    report += describe_skipped(train)
    if data.valid:
        valid = read_examples(
            data.valid,
            data.valid_text_column or data.text_column,
            data.valid_label_column or data.label_column,
            data.encoding,
            "--valid",
            split="validation",
        )
        report += describe_skipped(valid)
    else:
        if len(train.texts) < 2:
            raise DataError(
                f"{data.train}: need at least 2 rows to hold out validation data; pass --valid"
            )
        held, kept = data_lib.holdout_split(
            len(train.texts), data.validation_split, config.training.seed
        )
        valid = Examples(
            [train.texts[i] for i in held], [train.labels[i] for i in held], source="held-out"
        )
        train = Examples(
            [train.texts[i] for i in kept], [train.labels[i] for i in kept], source=train.source
        )
        report.append(
            f"validation: held out {len(held)} of {len(held) + len(kept)} training rows (seed {config.training.seed})"
        )

    if (run_dir / LABELS_FILE).exists():
        labels = Labels.load(run_dir)
    else:
        values = sort_labels(set(train.labels))
        if len(values) < 2:
            raise DataError(
                f"{data.train}: found only one label ({values[0]!r}); a classifier needs two or more"
            )
        names = tuple(data.label_names.get(v, v) for v in values)
        labels = Labels(tuple(values), names)
        labels.save(run_dir)
    if (run_dir / "vocab.txt").exists():
        tokenizer = Tokenizer.load(run_dir)
    elif config.model.init_from:
        tokenizer = copy_tokenizer(config.model.init_from, run_dir)
        report.append(
            f"tokenizer: the language model's ({tokenizer.kind}, {tokenizer.vocabulary_size} tokens) "
            f"from {config.model.init_from}; [tokenizer] settings are not used"
        )
    else:
        tokenizer = build_tokenizer(config.tokenizer, train.texts, run_dir)

    train_keep, train_ids, train_unknown = labels_to_ids(train, labels)
    if not len(train_keep):  # only when resuming with new data
        raise DataError(
            f"{data.train}: none of its labels ({describe_labels(train_unknown)}) are among the "
            f"labels this run was first trained on ({', '.join(map(repr, labels.values))}, in "
            f"{run_dir / LABELS_FILE}); pass --restart to train on the new labels"
        )
    if train_unknown:
        report.append(
            f"{data.train}: {sum(train_unknown.values())} row(s) with labels unseen at first training, skipped"
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
            f"{valid.source}: skipped {sum(valid_unknown.values())} row(s) with labels not in training: "
            + describe_labels(valid_unknown)
        )
    train_tokens = encode_texts(tokenizer, [train.texts[i] for i in train_keep], data.max_length)
    valid_tokens = encode_texts(tokenizer, [valid.texts[i] for i in valid_keep], data.max_length)
    unknown_rate = count_unknown(valid_tokens) / max(1, int(tf.size(valid_tokens.flat_values)))
    counts = np.bincount(train_ids, minlength=len(labels.values))
    report.append(
        f"data: {len(train_ids)} training / {len(valid_ids)} validation examples; classes "
        + ", ".join(f"{n}={c}" for n, c in zip(labels.names, counts, strict=True))
        + f"; vocabulary {tokenizer.vocabulary_size} ({tokenizer.kind}); "
        f"validation unknown-token rate {unknown_rate:.1%}"
    )
    if len(valid_ids) == 0:
        raise DataError(f"{valid.source}: no validation rows with known labels")
    training = config.training
    train_dataset = data_lib.batched_sequences(
        train_tokens,
        train_ids,
        training.batch_size,
        data.max_length,
        shuffle=True,
        seed=training.seed,
        static_shapes=training.static_shapes,
        shuffle_buffer=training.shuffle_buffer,
    )
    valid_dataset = data_lib.batched_sequences(
        valid_tokens,
        valid_ids,
        training.batch_size,
        data.max_length,
        shuffle=False,
        seed=training.seed,
        static_shapes=training.static_shapes,
    )
    report.append(f"padding: {data_lib.padding_fraction(train_dataset):.1%} of training positions")
    class_weight = None
    if config.model.class_weight == "balanced":
        total = counts.sum()
        class_weight = {i: float(total / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}
    return fit_lib.TaskData(
        train=train_dataset,
        valid=valid_dataset,
        tokenizer=tokenizer,
        model_arguments={
            "num_classes": len(labels.values),
            "init_from": config.model.init_from or None,
        },
        steps_per_epoch=math.ceil(len(train_ids) / training.batch_size),
        class_weight=class_weight,
        monitor="val_accuracy",
        monitor_mode="max",
        report=report,
    )


# ----------------------------------------------------------------------------- model


def build_model(
    config: SentimentConfig,
    tokenizer: Tokenizer,
    num_classes: int = 2,
    total_steps: int | None = None,
    compile: bool = True,
    init_from: str | None = None,
) -> keras.Model:
    """Embedding -> RNNStack -> pooling -> dropout -> dense; compiled unless `compile=False`.

    `init_from` (training only; a language-model run directory) copies that
    model's embedding and recurrent weights in before training starts.
    """
    model_config, stack = config.model, config.model.stack
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")  # (batch, time)
    x = token_ids
    if model_config.token_dropout:
        x = TokenDropout(model_config.token_dropout, unknown_id=UNK_ID, name="token_dropout")(x)
    x = keras.layers.Embedding(
        tokenizer.vocabulary_size, model_config.embedding_dim, mask_zero=True, name="embedding"
    )(x)  # (batch, time, embedding_dim)
    if model_config.embedding_dropout:
        x = keras.layers.SpatialDropout1D(model_config.embedding_dropout, name="embedding_dropout")(
            x
        )
    final = model_config.pooling == "final"
    x = RNNStack(
        cell=stack.cell,
        num_layers=stack.num_layers,
        units=stack.units,
        bidirectional=stack.bidirectional,
        dropout=stack.dropout,
        residual=stack.residual,
        return_sequences=not final,
        name="rnn_stack",
    )(x)  # (batch, features) or (batch, time, features)
    if not final:
        x = MaskedPooling(model_config.pooling, name=f"{model_config.pooling}_pooling")(x)
    x = keras.layers.Dropout(model_config.dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)  # (batch, classes)
    model = keras.Model(token_ids, logits, name="sentiment")
    if init_from:
        initialize_from_language_model(model, tokenizer, init_from)
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=optimizer_lib.jit_compile_flag(config.training),
    )
    return model


def copy_tokenizer(lm_run_dir: str | os.PathLike, run_dir: Path) -> Tokenizer:
    """Copy a language model's vocabulary files into `run_dir` (same ids, so its weights fit)."""
    source = Path(lm_run_dir)
    if not (source / "config.json").is_file():
        raise RunDirError(f"{source} is not a language-model run directory (--init-from)")
    for name in ("vocab.txt", "tokenizer.json"):
        if not (source / name).is_file():
            raise RunDirError(f"{source}: missing {name} (--init-from)")
        atomic_write_text(run_dir / name, (source / name).read_text(encoding="utf-8"))
    return Tokenizer.load(run_dir)


def initialize_from_language_model(
    model: keras.Model, tokenizer: Tokenizer, lm_run_dir: str | os.PathLike
) -> None:
    """Copy the embedding and RNNStack weights of a language-model run into `model`.

    The classifier must use the language model's vocabulary and the same
    embedding width, cell, number of layers and units. A bidirectional
    one-layer classifier gets the weights in its forward direction.
    """
    from textrnn import language_model

    lm_config, lm_tokenizer, lm_model = language_model.load_run(lm_run_dir)
    if lm_tokenizer.vocabulary != tokenizer.vocabulary:
        raise ConfigError(
            f"--init-from {lm_run_dir}: the vocabulary differs from this run's; "
            "use a fresh --run-dir so the language model's vocabulary is copied"
        )
    stack = model.get_layer("rnn_stack")
    lm_stack = lm_model.get_layer("rnn_stack")
    mismatches = [
        f"{name} {ours} vs {theirs}"
        for name, ours, theirs in [
            (
                "model.embedding_dim",
                model.get_layer("embedding").output_dim,
                lm_config.model.embedding_dim,
            ),
            ("model.stack.cell", stack.cell, lm_stack.cell),
            ("model.stack.num_layers", stack.num_layers, lm_stack.num_layers),
            ("model.stack.units", stack.units, lm_stack.units),
        ]
        if ours != theirs
    ]
    if stack.bidirectional and stack.num_layers > 1:
        mismatches.append("model.stack.bidirectional with more than one layer")
    if mismatches:
        raise ConfigError(
            f"--init-from {lm_run_dir}: the classifier must match the language model: "
            + "; ".join(mismatches)
        )
    model.get_layer("embedding").embeddings.assign(lm_model.get_layer("embedding").embeddings)
    for ours, theirs in zip(stack.recurrent_layers, lm_stack.recurrent_layers, strict=True):
        target = ours.forward_layer if stack.bidirectional else ours
        target.set_weights(theirs.get_weights())


def load_run(run_dir: str | os.PathLike) -> tuple[SentimentConfig, Tokenizer, Labels, keras.Model]:
    """Rebuild a trained classifier from its run directory."""
    config = run_dir_lib.load_run_config(run_dir, SentimentConfig)
    if config.task != "sentiment":
        raise RunDirError(f"{run_dir} holds a {config.task!r} run, not a sentiment one")
    tokenizer = Tokenizer.load(run_dir)
    labels = Labels.load(run_dir)
    model = build_model(config, tokenizer, num_classes=len(labels.values), compile=False)
    run_dir_lib.load_weights(model, run_dir)
    return config, tokenizer, labels, model


# ----------------------------------------------------------------------------- serving


def serving_signatures(
    model: keras.Model, tokenizer: Tokenizer, config: SentimentConfig, labels: Labels
) -> dict[str, Any]:
    """`serving_default`: text tf.string [batch] -> label, probabilities, classes."""
    names = tf.constant(list(labels.names))
    max_length = config.data.max_length

    def classify_text(text: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = tokenizer.encode_padded(text, max_length)  # (batch, time)
        probabilities = tf.nn.softmax(
            tf.cast(model(ids, training=False), tf.float32)
        )  # (batch, classes)
        best = tf.argmax(probabilities, axis=-1)
        batch = tf.shape(text)[0]
        return {
            "label": tf.gather(names, best),
            "probability": tf.reduce_max(probabilities, axis=-1),
            "probabilities": probabilities,
            "classes": tf.tile(names[tf.newaxis, :], [batch, 1]),
        }

    serve = tf.function(
        classify_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def classify(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        # TensorFlow Serving's Classify API: serialized tf.Example with a "text" bytes feature.
        # Required: an example without it is a client's mistake, not an empty review.
        features = tf.io.parse_example(examples, {"text": tf.io.FixedLenFeature([], tf.string)})
        outputs = classify_text(features["text"])
        return {"classes": outputs["classes"], "scores": outputs["probabilities"]}

    return {"serving_default": serve, "classify": classify}


def predict(serve_fn: Any, texts: list[str], batch_size: int = 256) -> list[dict[str, Any]]:
    """Classify `texts` with a serving function (in-process or loaded), batch by batch."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(texts), batch_size):
        batch = tf.constant(texts[start : start + batch_size], dtype=tf.string)
        outputs = serve_fn(text=batch)
        labels = outputs["label"].numpy()
        probabilities = outputs["probabilities"].numpy()
        classes = [c.decode("utf-8") for c in outputs["classes"].numpy()[0]] if len(labels) else []
        for label, row in zip(labels, probabilities, strict=True):
            results.append(
                {
                    "label": label.decode("utf-8"),
                    "probability": float(row.max()),
                    "probabilities": {c: float(p) for c, p in zip(classes, row, strict=True)},
                }
            )
    return results


# ----------------------------------------------------------------------------- evaluation


def evaluate(
    run_dir: str | os.PathLike,
    data_path: str,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix."""
    config, tokenizer, labels, model = load_run(run_dir)
    examples = read_examples(
        data_path,
        text_column or config.data.valid_text_column or config.data.text_column,
        label_column or config.data.valid_label_column or config.data.label_column,
        encoding or config.data.encoding,
        "--data",
    )
    keep, truth, unknown = labels_to_ids(examples, labels)
    if not len(keep):
        raise DataError(
            f"{data_path}: none of its labels were seen in training ({describe_labels(unknown)})"
        )
    serve = serving_signatures(model, tokenizer, config, labels)["serving_default"]
    texts = [examples.texts[i] for i in keep]
    predicted = []
    for start in range(0, len(texts), batch_size):
        outputs = serve(text=tf.constant(texts[start : start + batch_size]))
        predicted.append(np.argmax(outputs["probabilities"].numpy(), axis=-1))
    prediction = np.concatenate(predicted)
    metrics = classification_metrics(truth, prediction, list(labels.names))
    metrics.update(
        {
            "examples": int(len(truth)),
            "skipped_unknown_label": int(sum(unknown.values())),
            "unknown_labels": dict(unknown.most_common(20)),
            "skipped_empty_text": examples.skipped_empty,
            "skipped_missing_label": examples.skipped_unlabeled,
        }
    )
    return metrics


def classification_metrics(
    truth: np.ndarray, prediction: np.ndarray, names: list[str]
) -> dict[str, Any]:
    classes = len(names)
    confusion = np.zeros((classes, classes), dtype=np.int64)  # rows: truth, columns: prediction
    np.add.at(confusion, (truth, prediction), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(names):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(confusion[i, :].sum()),
        }
    return {
        "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion_matrix": {"labels": names, "rows_truth_columns_predicted": confusion.tolist()},
    }


def export_parts(
    config: SentimentConfig, tokenizer: Tokenizer, labels: Labels, model: keras.Model
) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """(signatures, resources to track, manifest) for `textrnn.export`."""
    signatures = serving_signatures(model, tokenizer, config, labels)
    manifest = {
        "labels": list(labels.names),
        "max_length": config.data.max_length,
        "tokenizer": tokenizer.settings(),
    }
    return signatures, [model, tokenizer], manifest


def warmup_requests(config, tokenizer, labels, model) -> list[tuple[str, dict[str, Any]]]:
    return [("serving_default", {"text": np.array([b"a warm-up sentence", b""], dtype=object)})]
