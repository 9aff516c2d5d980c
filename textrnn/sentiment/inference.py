"""Classifying texts (`predict`) and measuring a run on labelled data (`evaluate`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.errors import ConfigError, DataError
from textrnn.sentiment.data import describe_labels, labels_to_ids, read_examples
from textrnn.sentiment.run import load_run
from textrnn.sentiment.serving import classification_signatures


@dataclass(frozen=True)
class PredictOptions:
    """How `predict` runs.

    Args:
        batch_size: texts per call of the serving function (bounds memory).
    """

    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")


def predict(
    serve_fn: Any, texts: list[str], options: PredictOptions | None = None
) -> list[dict[str, Any]]:
    """Classify `texts` with a serving function (in-process or loaded), batch by batch.

    Each result: `label`, `probability` (of that label) and `probabilities`
    (label name -> probability).
    """
    batch_size = (options or PredictOptions()).batch_size
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


def evaluate(
    run_dir: str | os.PathLike,
    data_path: str,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix."""
    run = load_run(run_dir)
    data = run.config.data
    examples = read_examples(
        data_path,
        text_column or data.valid_text_column or data.text_column,
        label_column or data.valid_label_column or data.label_column,
        encoding or data.encoding,
        "--data",
    )
    keep, truth, unknown = labels_to_ids(examples, run.labels)
    if not len(keep):
        raise DataError(
            f"{data_path}: none of its labels were seen in training ({describe_labels(unknown)})"
        )
    serve = classification_signatures(run)["serving_default"]
    texts = [examples.texts[i] for i in keep]
    predicted = []
    for start in range(0, len(texts), batch_size):
        outputs = serve(text=tf.constant(texts[start : start + batch_size]))
        predicted.append(np.argmax(outputs["probabilities"].numpy(), axis=-1))
    prediction = np.concatenate(predicted)
    metrics = classification_metrics(truth, prediction, list(run.labels.names))
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
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, confusion matrix."""
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
