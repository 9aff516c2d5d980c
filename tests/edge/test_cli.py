"""The commands: export-litert, check-tokenizer, and --model taking a LiteRT export."""

from __future__ import annotations

import shutil

import pytest
import tensorflow as tf
from cli.invoke import assert_user_error, invoke

from textrnn.edge import convert
from textrnn.errors import ConfigError
from textrnn.tasks import LiteRTParts


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def test_commands_accept_the_litert_export(runner, sentiment_run, litert_sentiment, litert_lm):
    texts = ["a good film", "a bad film"]
    from_litert = invoke(runner, ["sentiment", "predict", "--model", litert_sentiment, *texts])
    from_run = invoke(runner, ["sentiment", "predict", "--model", sentiment_run.run_dir, *texts])
    assert from_litert.exit_code == 0, from_litert.output
    assert from_litert.stdout == from_run.stdout
    args = ["--prompt", "the", "--max-tokens", "15", "--temperature", "0.7", "--seed", "2"]
    batched = invoke(runner, ["generate", "--model", litert_lm, *args])
    streamed = invoke(runner, ["generate", "--model", litert_lm, *args, "--stream"])
    assert batched.exit_code == 0 and streamed.exit_code == 0, batched.output + streamed.output
    assert batched.stdout == streamed.stdout


def test_translate_accepts_the_litert_export(runner, translation_run, litert_translation):
    args = ["the dog runs", "a cat sleeps", "--beam-size", "3", "--n-best", "2"]
    from_litert = invoke(runner, ["translation", "translate", "--model", litert_translation, *args])
    from_run = invoke(runner, ["translation", "translate", "--model", translation_run, *args])
    assert from_litert.exit_code == 0, from_litert.output
    assert from_litert.stdout == from_run.stdout


def test_check_tokenizer_reports_identical_ids(runner, sentiment_run):
    result = invoke(
        runner, ["sentiment", "check-tokenizer", "--run-dir", sentiment_run.run_dir, "--data",
                 sentiment_run.train]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "identical" in result.stdout


def test_a_run_of_another_task_is_refused(runner, sentiment_run, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        runner, ["lm", "export-litert", "--run-dir", sentiment_run.run_dir, "--out", out]
    )
    assert_user_error(result, "holds a 'sentiment' run", "textrnn sentiment export-litert")
    assert not out.exists()


def test_an_unwritable_out_is_refused(runner, sentiment_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = invoke(
        runner,
        ["sentiment", "export-litert", "--run-dir", sentiment_run.run_dir, "--out", blocker / "x"],
    )
    assert_user_error(result, "--out")
    assert blocker.read_text() == "not a directory"


def test_an_unreproducible_tokenizer_setting_is_refused(runner, sentiment_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(sentiment_run.run_dir, run_dir)
    settings = run_dir / "tokenizer.json"
    settings.write_text(settings.read_text().replace('"split": "script"', '"split": "regex"'))
    result = invoke(
        runner,
        ["sentiment", "export-litert", "--run-dir", run_dir, "--out", tmp_path / "out"],
    )
    assert_user_error(result, "tokenizer.split", "no host implementation")
    assert not (tmp_path / "out").exists()


def test_a_graph_that_needs_flex_ops_fails_at_conversion():
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.int32, name="token_ids")])
    def needs_flex(token_ids):
        return {"text": tf.strings.as_string(token_ids)}

    parts = LiteRTParts({"needs_flex": needs_flex}, [], {}, {})
    with pytest.raises(ConfigError, match="built-in ops only: .*AsString"):
        convert.convert(parts, "none")
