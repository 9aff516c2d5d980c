"""Sentiment task: train on tiny data, predict, evaluate, resume, bad runs and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import sentiment_rows, tiny_config, train_tiny, write_tsv

from textrnn import export, sentiment, training
from textrnn.errors import DataError, ModelPathError, RunDirError


def _serve(path):
    return export.load_serving(path, expected_task="sentiment").signatures["serving_default"]


def _copy_run(sentiment_run, tmp_path):
    return shutil.copytree(sentiment_run.run_dir, tmp_path / "run")


# ----------------------------------------------------------------------------- train, predict


def test_training_leaves_a_complete_run_directory(sentiment_run):
    run_dir = sentiment_run.run_dir
    for name in (
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "labels.json",
        "model.weights.h5",
        "state.json",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.weights.h5").is_file()
    assert (run_dir / "checkpoints" / "last.weights.h5").is_file()
    assert any((run_dir / "logs").rglob("*tfevents*"))
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 1
    assert json.loads((run_dir / "labels.json").read_text())["values"] == ["0", "1"]
    config = training.load_run_config(run_dir, sentiment.Config)
    assert config == sentiment_run.config
    assert not list(run_dir.glob(".tmp*")) and not list(run_dir.glob(".*.tmp"))


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
    results = sentiment.predict(sentiment_serve, texts, batch_size=2)
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

    sentiment.predict(counting, ["a good film"] * 10, batch_size=4)
    assert calls == [4, 4, 2]


def test_training_tokenization_matches_serving(sentiment_run):
    """The ids the model trained on (data pipeline) give the probabilities serving gives."""
    config, tokenizer, labels, model = sentiment.load_run(sentiment_run.run_dir)
    texts = ["A GOOD film!!", "bad, bad; BAD", "Café crème", "good " * 50, "unseen words here", "x"]
    ids = sentiment.encode_texts(tokenizer, texts, config.data.max_length)
    assert max(ids.row_lengths().numpy()) == config.data.max_length  # truncated in training too
    import tensorflow as tf

    expected = tf.nn.softmax(model(ids.to_tensor(), training=False)).numpy()
    served = sentiment.serving_signatures(model, tokenizer, config, labels)["serving_default"](
        text=tf.constant(texts)
    )
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)


# ----------------------------------------------------------------------------- evaluate


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


# ----------------------------------------------------------------------------- labels


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


def test_resuming_on_data_with_only_new_labels_is_a_clear_error(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    train = write_tsv(tmp_path / "new.tsv", sentiment_rows(12, labels=("pos", "neg")))
    with pytest.raises(DataError, match="none of its labels .* pass --restart"):
        sentiment.load_datasets(tiny_config(train, sentiment_run.valid), run_dir)


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


# ----------------------------------------------------------------------------- resume


def test_rerun_resumes_and_changed_model_refuses_then_restart_starts_over(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    extra = {"model.stack.bidirectional": True, "model.pooling": "max"}
    lines = []
    from textrnn import training as training_lib

    config = tiny_config(sentiment_run.train, sentiment_run.valid, **extra)
    training_lib.train(sentiment, config, run_dir, echo=lines.append, verbose=0)
    assert any("nothing to do" in line for line in lines)  # same command again: already complete

    with pytest.raises(RunDirError, match=r"different \[model\].*--restart"):
        train_tiny(run_dir, sentiment_run.train, sentiment_run.valid, **{"model.stack.units": 6})
    assert (
        json.loads((run_dir / "config.json").read_text())["model"]["stack"]["units"] == 4
    )  # untouched

    lines.clear()
    config = tiny_config(sentiment_run.train, sentiment_run.valid, **{"model.stack.units": 6})
    training_lib.train(sentiment, config, run_dir, restart=True, echo=lines.append, verbose=0)
    assert not any("resuming" in line or "nothing to do" in line for line in lines)
    assert json.loads((run_dir / "config.json").read_text())["model"]["stack"]["units"] == 6
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 1
    sentiment.load_run(run_dir)  # the new weights fit the new model


def test_more_epochs_continue_from_the_backup(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    lines = []
    config = tiny_config(
        sentiment_run.train,
        sentiment_run.valid,
        **{"model.stack.bidirectional": True, "model.pooling": "max", "training.epochs": 2},
    )
    training.train(sentiment, config, run_dir, echo=lines.append, verbose=0)
    assert any(line.startswith("resuming") for line in lines)
    assert any("trained 1 epoch(s)" in line for line in lines)
    assert json.loads((run_dir / "state.json").read_text())["epochs_completed"] == 2


# ----------------------------------------------------------------------------- damaged runs


def test_missing_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="not found"):
        sentiment.load_run(tmp_path / "missing")
    with pytest.raises(ModelPathError, match="not found"):
        export.load_serving(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPathError, match="neither a run directory"):
        export.load_serving(tmp_path / "empty")
    with pytest.raises(RunDirError, match="missing config.json"):
        sentiment.load_run(tmp_path / "empty")


def _drop_key(path, key):
    values = json.loads(path.read_text())
    del values[key]
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "config.json").write_text("{truncated"), "corrupt config"),
        (
            lambda d: (d / "config.json").write_text(
                '{"task": "sentiment", "model": {"bogus": 1}}'
            ),
            "bogus",
        ),
        (lambda d: (d / "labels.json").unlink(), "missing labels.json"),
        (lambda d: (d / "vocab.txt").unlink(), "missing vocab.txt"),
        (lambda d: (d / "vocab.txt").write_text("[PAD]\n[UNK]\n"), "vocab.txt|corrupt|PAD"),
        (lambda d: (d / "tokenizer.json").write_bytes(b"\xff\xfe"), "corrupt"),
        (lambda d: (d / "tokenizer.json").write_text("[]"), "corrupt"),
        (lambda d: _drop_key(d / "tokenizer.json", "kind"), "corrupt"),
        (
            lambda d: (d / "vocab.txt").write_text(
                "".join(sorted((d / "vocab.txt").read_text().splitlines(True)))
            ),
            "corrupt",
        ),
        (lambda d: (d / "labels.json").write_text("{}"), "corrupt"),
        (
            lambda d: (d / "labels.json").write_text(
                '{"values": ["0", "1"], "names": ["only one"]}'
            ),
            "corrupt",
        ),
    ],
)
def test_corrupt_run_directory_is_a_clear_error(sentiment_run, tmp_path, damage, match):
    run_dir = _copy_run(sentiment_run, tmp_path)
    damage(run_dir)
    with pytest.raises(RunDirError, match=match):
        sentiment.load_run(run_dir)


def test_damaged_final_weights_fall_back_to_checkpoints(sentiment_run, sentiment_serve, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    expected = sentiment.predict(sentiment_serve, ["a good film"])
    (run_dir / "model.weights.h5").write_bytes(b"not an hdf5 file")
    assert sentiment.predict(_serve(run_dir), ["a good film"])[0]["probabilities"] == pytest.approx(
        expected[0]["probabilities"], abs=1e-6
    )


def test_every_weights_file_damaged_or_missing(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    for path in [run_dir / "model.weights.h5", *(run_dir / "checkpoints").glob("*.h5")]:
        path.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(RunDirError, match="damaged"):
        sentiment.load_run(run_dir)
    for path in [run_dir / "model.weights.h5", *(run_dir / "checkpoints").glob("*.h5")]:
        path.unlink()
    with pytest.raises(RunDirError, match="no trained weights"):
        sentiment.load_run(run_dir)


def test_weights_from_a_different_model_are_a_clear_error(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["model"]["stack"]["units"] = 5  # config edited by hand after training
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunDirError):
        sentiment.load_run(run_dir)


def test_labels_that_disagree_with_the_weights_are_one_clear_error(
    sentiment_run, tmp_path, caplog, recwarn
):
    run_dir = _copy_run(sentiment_run, tmp_path)
    (run_dir / "labels.json").write_text(
        '{"values": ["0", "1", "2"], "names": ["negative", "positive", "neutral"]}'
    )
    with caplog.at_level("WARNING"), pytest.raises(RunDirError) as raised:
        sentiment.load_run(run_dir)
    message = str(raised.value)
    assert "do not fit the model" in message and "labels" in message and "--restart" in message
    assert "damaged" not in message  # the weights files are fine; labels.json is not
    assert "\n" not in message and len(message) < 400
    assert not caplog.records and not recwarn.list  # no per-file warnings or weight dumps


def test_a_run_of_another_task_is_refused(sentiment_run, tmp_path):
    run_dir = _copy_run(sentiment_run, tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["task"] = "translation"
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunDirError, match="not a sentiment"):
        sentiment.load_run(run_dir)
