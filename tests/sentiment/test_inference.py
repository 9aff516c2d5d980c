"""predict (batched, any text) and evaluate (metrics, unknown labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import sentiment_rows, write_tsv
from textrnn import sentiment
from textrnn.errors import DataError
from textrnn.sentiment import PredictOptions


def test_predict_after_training(sentiment_serve):
    results = sentiment.predict(sentiment_serve, ["a good film", "a terrible story", "great fun"])
    assert len(results) == 3
    for result in results:
        assert result["label"] in ("0", "1")
        assert set(result["probabilities"]) == {"0", "1"}
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["probability"] == pytest.approx(max(result["probabilities"].values()))


def test_empty_whitespace_and_huge_texts_predict_fine(sentiment_serve):
    texts = ["", "   ", "\t\n", "a good film " * 90_000, "ünïcödé ☃ 😀", "\ufffd"]
    results = sentiment.predict(sentiment_serve, texts, PredictOptions(batch_size=2))
    assert len(results) == len(texts)
    for result in results:
        assert result["label"] in ("0", "1")
        assert np.isfinite(result["probability"])
    assert results[0]["probabilities"] == pytest.approx(results[1]["probabilities"], abs=1e-6)
    assert sentiment.predict(sentiment_serve, []) == []


def test_predict_batches_rather_than_calling_once_per_text(sentiment_serve):
    serve = sentiment_serve
    calls = []

    def counting(**kwargs):
        calls.append(int(kwargs["text"].shape[0]))
        return serve(**kwargs)

    sentiment.predict(counting, ["a good film"] * 10, PredictOptions(batch_size=4))
    assert calls == [4, 4, 2]


def test_evaluate_metrics_and_unknown_labels(sentiment_run, tmp_path):
    rows = sentiment_rows(10, seed=3) + [
        ("a strange film", "2"),
        ("meh", "neutral"),
        ("ok", "neutral"),
        ("", "1"),
    ]
    path = write_tsv(tmp_path / "eval.tsv", rows)
    metrics = sentiment.evaluate(sentiment_run.run_dir, str(path))
    assert metrics["examples"] == 10
    assert metrics["skipped_unknown_label"] == 3
    assert metrics["unknown_labels"] == {"neutral": 2, "2": 1}
    assert metrics["skipped_empty_text"] == 1
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    matrix = np.array(metrics["confusion_matrix"]["rows_truth_columns_predicted"])
    assert matrix.shape == (2, 2) and matrix.sum() == 10
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 10)
    assert set(metrics["per_class"]) == {"0", "1"}
    assert sum(v["support"] for v in metrics["per_class"].values()) == 10
    json.dumps(metrics)


def test_evaluate_with_only_unknown_labels_is_a_clear_error(sentiment_run, tmp_path):
    path = write_tsv(tmp_path / "eval.tsv", [("a film", "neutral"), ("another", "mixed")])
    with pytest.raises(DataError, match="none of its labels"):
        sentiment.evaluate(sentiment_run.run_dir, str(path))


def test_classification_metrics_known_values():
    truth = np.array([0, 0, 0, 1, 1, 2])
    prediction = np.array([0, 0, 1, 1, 2, 2])
    metrics = sentiment.classification_metrics(truth, prediction, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["c"]["recall"] == pytest.approx(1.0)
    f1s = [0.8, 0.5, 2 / 3]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1s))
    assert metrics["confusion_matrix"]["rows_truth_columns_predicted"] == [
        [2, 1, 0],
        [0, 1, 1],
        [0, 0, 1],
    ]
