"""`textrnn sentiment train | evaluate | predict` through the CLI: outputs, exit codes."""

from __future__ import annotations

import json

import pytest

from helpers import (
    sentiment_rows,
    write_tiny_recipe,
    write_tsv,
)

from .invoke import assert_user_error as _assert_user_error
from .invoke import invoke as _invoke

# ----------------------------------------------------------------------------- train


def test_train_then_rerun_resumes(runner, tmp_path):
    recipe = tmp_path / "tiny.toml"
    write_tiny_recipe(recipe)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(24), header=("sentence", "label"))
    run_dir = tmp_path / "run"
    args = [
        "sentiment",
        "train",
        "--config",
        recipe,
        "--train",
        train,
        "--text-column",
        "sentence",
        "--run-dir",
        run_dir,
        "--strategy",
        "cpu",
        "--epochs",
        "1",
    ]
    result = _invoke(runner, args)
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stdout and "val_accuracy" in result.stdout
    assert (run_dir / "model.weights.h5").is_file()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["data"]["text_column"] == "sentence" and saved["model"]["stack"]["units"] == 4

    again = _invoke(runner, args)
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.stdout

    changed = _invoke(runner, [*args, "--max-length", "8"])
    _assert_user_error(changed, "--restart")


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        (lambda d: d / "missing.tsv", ["not found", "--train"]),
        (lambda d: _empty(d), ["empty"]),
        (
            lambda d: write_tsv(d / "t.tsv", sentiment_rows(6), header=("text", "stars")),
            ["columns found: text, stars"],
        ),
        (lambda d: _latin1(d), ["line 2", "--encoding"]),
    ],
)
def test_train_bad_input_exits_2_with_one_line(runner, tmp_path, setup, needles):
    path = setup(tmp_path)
    result = _invoke(runner, ["sentiment", "train", "--train", path, "--run-dir", tmp_path / "run"])
    _assert_user_error(result, *needles)


def _empty(directory):
    path = directory / "empty.tsv"
    path.write_text("")
    return path


def _latin1(directory):
    path = directory / "latin.tsv"
    path.write_bytes("text\tlabel\ncafé\t1\n".encode("latin-1"))
    return path


def test_train_bad_config_exits_2(runner, tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text("[training]\nepoch = 3\n")
    _assert_user_error(_invoke(runner, ["sentiment", "train", "--config", recipe]), "'epoch'")
    _assert_user_error(
        _invoke(runner, ["sentiment", "train", "--strategy", "gpu"]), "training.strategy"
    )
    usage = _invoke(runner, ["sentiment", "train", "--epochs", "many"])
    assert usage.exit_code == 2 and "Traceback" not in usage.output


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_json_is_one_object(runner, sentiment_run, tmp_path):
    data = write_tsv(tmp_path / "eval.tsv", sentiment_rows(6, seed=9) + [("odd", "neutral")])
    result = _invoke(
        runner,
        ["sentiment", "evaluate", "--run-dir", sentiment_run.run_dir, "--data", data, "--json"],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert metrics["examples"] == 6 and metrics["skipped_unknown_label"] == 1

    text = _invoke(
        runner, ["sentiment", "evaluate", "--run-dir", sentiment_run.run_dir, "--data", data]
    )
    assert text.exit_code == 0
    assert (
        "accuracy" in text.stdout
        and "confusion matrix" in text.stdout
        and "'neutral' (1)" in text.stdout
    )


def test_evaluate_bad_input(runner, sentiment_run, tmp_path):
    data = write_tsv(tmp_path / "eval.tsv", sentiment_rows(4))
    _assert_user_error(
        _invoke(runner, ["sentiment", "evaluate", "--run-dir", tmp_path / "nope", "--data", data]),
        "not found",
        "--run-dir",
    )
    _assert_user_error(
        _invoke(
            runner,
            [
                "sentiment",
                "evaluate",
                "--run-dir",
                sentiment_run.run_dir,
                "--data",
                data,
                "--label-column",
                "stars",
            ],
        ),
        "columns found: text, label",
    )
    missing = _invoke(runner, ["sentiment", "evaluate", "--run-dir", sentiment_run.run_dir])
    assert missing.exit_code == 2 and "--data" in missing.output


# ----------------------------------------------------------------------------- predict


def test_predict_arguments_and_stdin(runner, sentiment_run, sentiment_export):
    result = _invoke(
        runner, ["sentiment", "predict", "--model", sentiment_run.run_dir, "a good film", ""]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    label, probability, text = lines[0].split("\t")
    assert label in ("0", "1") and 0.5 <= float(probability) <= 1.0 and text == "a good film"

    stdin = "a good film\n\n   \nbad acting\r\nlast line without newline"
    result = _invoke(
        runner,
        ["sentiment", "predict", "--model", sentiment_export, "--json", "--batch-size", "2"],
        input=stdin,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == [
        "a good film",
        "",
        "   ",
        "bad acting",
        "last line without newline",
    ]
    for row in rows:
        assert row["label"] in ("0", "1") and set(row["probabilities"]) == {"0", "1"}


def test_predict_bad_input(runner, sentiment_run, tmp_path):
    _assert_user_error(
        _invoke(
            runner,
            ["sentiment", "predict", "--model", sentiment_run.run_dir],
            input=b"fine\n\xff\xfe\n",
        ),
        "line 2",
        "--encoding",
    )
    latin = _invoke(
        runner,
        ["sentiment", "predict", "--model", sentiment_run.run_dir, "--encoding", "latin-1"],
        input="café\n".encode("latin-1"),
    )
    assert latin.exit_code == 0 and "café" in latin.stdout
    _assert_user_error(
        _invoke(runner, ["sentiment", "predict", "--model", tmp_path / "nope", "x"]), "not found"
    )
    (tmp_path / "empty").mkdir()
    _assert_user_error(
        _invoke(runner, ["sentiment", "predict", "--model", tmp_path / "empty", "x"]), "neither"
    )


# ----------------------------------------------------------------------------- export
