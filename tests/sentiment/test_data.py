"""Sentiment data: labels learned and reloaded, bad rows and bad files, what a failed run leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import sentiment_rows, tiny_config, train_tiny, write_tsv
from textrnn import export, sentiment
from textrnn.errors import DataError


def _serve(path):
    return export.load_serving(path, expected_task="sentiment").signatures["serving_default"]


def test_string_labels_and_three_classes(tmp_path):
    rows = []
    for index, (text, _) in enumerate(sentiment_rows(30, seed=4)):
        rows.append((text, "pos" if index % 3 == 0 else "neg" if index % 3 == 1 else "neutral"))
    train = write_tsv(tmp_path / "train.tsv", rows, header=("sentence", "polarity"))
    run_dir = tmp_path / "run"
    train_tiny(
        run_dir,
        train,
        **{
            "data.text_column": "sentence",
            "data.label_column": "polarity",
            "model.stack.cell": "gru",
            "data.label_names": {"pos": "positive"},
            "tokenizer.kind": "char",
            "model.class_weight": "balanced",
        },
    )
    saved = json.loads((run_dir / "labels.json").read_text())
    assert saved["values"] == ["neg", "neutral", "pos"]
    assert saved["names"] == ["neg", "neutral", "positive"]
    results = sentiment.predict(_serve(run_dir), ["a good film", ""])
    for result in results:
        assert result["label"] in ("neg", "neutral", "positive")
        assert set(result["probabilities"]) == {"neg", "neutral", "positive"}
    # Evaluation accepts raw values and display names alike.
    eval_path = write_tsv(
        tmp_path / "eval.tsv",
        [("a good film", "pos"), ("a bad film", "positive"), ("x", "neg")],
        header=("sentence", "polarity"),
    )
    metrics = sentiment.evaluate(run_dir, str(eval_path))
    assert metrics["examples"] == 3 and metrics["skipped_unknown_label"] == 0
    assert np.array(metrics["confusion_matrix"]["rows_truth_columns_predicted"]).shape == (3, 3)


def test_a_single_label_is_rejected(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", [(t, "1") for t, _ in sentiment_rows(10)])
    with pytest.raises(DataError, match="only one label"):
        train_tiny(tmp_path / "run", train)


def test_validation_labels_disjoint_from_training_fail_and_leave_nothing(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(12, labels=("pos", "neg")))
    valid = write_tsv(tmp_path / "valid.tsv", sentiment_rows(6))  # labels 1 / 0
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match=r"valid\.tsv: none of its labels \('1' \(3\), '0' \(3\)\)"):
        train_tiny(run_dir, train, valid)
    assert not run_dir.exists()  # no labels.json or vocabulary for a later run to take up
    kept = tmp_path / "shared"
    (kept / "notes.txt").parent.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(DataError):
        train_tiny(kept, train, valid)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]  # only what train wrote goes
    train_tiny(run_dir, train)  # the corrected run starts clean
    assert json.loads((run_dir / "labels.json").read_text())["values"] == ["neg", "pos"]


def test_resuming_on_data_with_only_new_labels_is_a_clear_error(sentiment_run, run_copy, tmp_path):
    train = write_tsv(tmp_path / "new.tsv", sentiment_rows(12, labels=("pos", "neg")))
    with pytest.raises(DataError, match="none of its labels .* pass --restart"):
        sentiment.load_datasets(tiny_config(train, sentiment_run.valid), run_copy)


def test_empty_training_file(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("")
    with pytest.raises(DataError, match="empty"):
        train_tiny(tmp_path / "run", train)


def test_training_file_without_label_column_lists_columns(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(10), header=("text", "stars"))
    with pytest.raises(DataError, match="columns found: text, stars"):
        train_tiny(tmp_path / "run", train)


def test_no_training_data_names_the_option(tmp_path):
    with pytest.raises(DataError, match="--train"):
        train_tiny(tmp_path / "run", "")
