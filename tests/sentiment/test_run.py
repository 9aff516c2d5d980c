"""load_run: missing, corrupt or mismatched run directories are one clear error each."""

from __future__ import annotations

import json

import pytest

from textrnn import export, sentiment
from textrnn.errors import ModelPathError, RunDirError
from textrnn.sentiment import PredictOptions, SentimentRun


def _serve(path):
    return export.load_serving(path, expected_task="sentiment").signatures["serving_default"]


def test_load_run_returns_the_run_dataclass(sentiment_run):
    run = sentiment.load_run(sentiment_run.run_dir)
    assert isinstance(run, SentimentRun)
    assert run.config == sentiment_run.config
    assert run.labels.values == ("0", "1")
    assert run.model.get_layer("embedding").input_dim == run.tokenizer.vocabulary_size
    assert run.model.output_shape == (None, 2)


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
def test_corrupt_run_directory_is_a_clear_error(run_copy, damage, match):
    damage(run_copy)
    with pytest.raises(RunDirError, match=match):
        sentiment.load_run(run_copy)


def test_damaged_final_weights_fall_back_to_checkpoints(sentiment_serve, run_copy):
    expected = sentiment.predict(sentiment_serve, ["a good film"])
    (run_copy / "model.weights.h5").write_bytes(b"not an hdf5 file")
    fallback = sentiment.predict(_serve(run_copy), ["a good film"], PredictOptions())
    assert fallback[0]["probabilities"] == pytest.approx(expected[0]["probabilities"], abs=1e-6)


def test_every_weights_file_damaged_or_missing(run_copy):
    for path in [run_copy / "model.weights.h5", *(run_copy / "checkpoints").glob("*.h5")]:
        path.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(RunDirError, match="damaged"):
        sentiment.load_run(run_copy)
    for path in [run_copy / "model.weights.h5", *(run_copy / "checkpoints").glob("*.h5")]:
        path.unlink()
    with pytest.raises(RunDirError, match="no trained weights"):
        sentiment.load_run(run_copy)


def test_weights_from_a_different_model_are_a_clear_error(run_copy):
    saved = json.loads((run_copy / "config.json").read_text())
    saved["model"]["stack"]["units"] = 5  # config edited by hand after training
    (run_copy / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunDirError):
        sentiment.load_run(run_copy)


def test_labels_that_disagree_with_the_weights_are_one_clear_error(run_copy, caplog, recwarn):
    (run_copy / "labels.json").write_text(
        '{"values": ["0", "1", "2"], "names": ["negative", "positive", "neutral"]}'
    )
    with caplog.at_level("WARNING"), pytest.raises(RunDirError) as raised:
        sentiment.load_run(run_copy)
    message = str(raised.value)
    assert "do not fit the model" in message and "labels" in message and "--restart" in message
    assert "damaged" not in message  # the weights files are fine; labels.json is not
    assert "\n" not in message and len(message) < 400
    assert not caplog.records and not recwarn.list  # no per-file warnings or weight dumps


def test_a_run_of_another_task_is_refused(run_copy):
    saved = json.loads((run_copy / "config.json").read_text())
    saved["task"] = "translation"
    (run_copy / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunDirError, match="not a sentiment"):
        sentiment.load_run(run_copy)
