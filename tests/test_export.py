"""SavedModel export: versions, atomic writes, signatures, a fresh process without the run dir."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from helpers import PYTHON, SUBPROCESS_TIMEOUT, subprocess_env
from textrnn import export, tasks
from textrnn.errors import ModelPathError, RunDirError

TEXTS = ["a good film", "A TERRIBLE story!!", "", "   ", "café ☃ \ufffd", "good " * 300]

# Runs in a fresh interpreter: only tensorflow and tensorflow_text, never textrnn.
LOAD_AND_PREDICT = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the ops the graph uses
path, texts = sys.argv[1], json.loads(sys.argv[2])
loaded = tf.saved_model.load(path)
outputs = loaded.signatures["serving_default"](text=tf.constant(texts, dtype=tf.string))
print(json.dumps({
    "label": [v.decode() for v in outputs["label"].numpy()],
    "probabilities": outputs["probabilities"].numpy().astype(float).tolist(),
    "classes": [v.decode() for v in outputs["classes"].numpy()[0]],
    "textrnn_imported": any(name.startswith("textrnn") for name in sys.modules),
}))
"""


def _in_process(serve, texts):
    """Probabilities and labels from a `serving_default` signature."""
    outputs = serve(text=tf.constant(texts))
    return outputs["probabilities"].numpy(), [v.decode() for v in outputs["label"].numpy()]


def test_export_loads_in_a_fresh_process_after_the_run_directory_is_deleted(
    sentiment_run, tmp_path
):
    task = tasks.find("sentiment").load()  # the contract export uses, called directly
    parts = task.serving_signatures(task.load_run(sentiment_run.run_dir))
    assert isinstance(parts, tasks.ServingParts)
    expected, expected_labels = _in_process(parts.signatures["serving_default"], TEXTS)
    run_dir = shutil.copytree(sentiment_run.run_dir, tmp_path / "run")
    version = export.export_run(run_dir, tmp_path / "exports")
    shutil.rmtree(run_dir)
    result = subprocess.run(
        [PYTHON, "-c", LOAD_AND_PREDICT, str(version), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert not served["textrnn_imported"]
    np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)
    assert served["label"] == expected_labels
    assert served["classes"] == ["0", "1"]


def test_export_signature_and_assets(sentiment_export):
    assert (sentiment_export / "saved_model.pb").is_file()
    assets = {p.name for p in (sentiment_export / "assets").iterdir()}
    assert "vocab.txt" in assets
    manifest = json.loads((sentiment_export / "assets.extra" / export.MANIFEST).read_text())
    assert manifest["task"] == "sentiment" and manifest["labels"] == ["0", "1"]
    loaded = tf.saved_model.load(str(sentiment_export))
    signature = loaded.signatures["serving_default"]
    (inputs,) = signature.structured_input_signature[1].values()
    assert inputs.dtype == tf.string and inputs.shape.as_list() == [None]
    assert set(signature.structured_outputs) == {"label", "probability", "probabilities", "classes"}


def test_export_matches_in_process_and_classify_api(sentiment_serve, sentiment_export):
    expected, _ = _in_process(sentiment_serve, TEXTS)
    serving = export.load_serving(
        sentiment_export.parent, expected_task="sentiment"
    )  # base dir -> newest
    assert serving.source == "export"
    outputs = serving.signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
                }
            )
        ).SerializeToString()
        for text in TEXTS
    ]
    classified = serving.signatures["classify"](examples=tf.constant(examples))
    np.testing.assert_allclose(classified["scores"].numpy(), expected, atol=1e-5)


def test_versions_increase_and_existing_ones_are_never_overwritten(
    sentiment_run, sentiment_export, tmp_path
):
    assert sentiment_export.name == "1"  # the fixture exported into a new directory
    base = tmp_path / "exports"
    first = shutil.copytree(sentiment_export, base / "1")
    (base / "5").mkdir()
    (base / "5" / "keep.txt").write_text("mine")
    (base / "notes").mkdir()  # non-numeric entries are ignored
    second = export.export_run(sentiment_run.run_dir, base)
    assert second.name == "6"
    assert (base / "5" / "keep.txt").read_text() == "mine"
    assert (first / "saved_model.pb").is_file()
    assert (second / "saved_model.pb").is_file()
    assert not [p for p in base.iterdir() if p.name.startswith(".tmp")]


def test_interrupted_export_leaves_no_version_and_no_temporary_directory(
    sentiment_run, tmp_path, monkeypatch
):
    written = []

    def interrupt(path, requests):  # runs after the SavedModel is in the temporary directory
        written.append(
            (path.parent.parent / "saved_model.pb").is_file()
        )  # in the temporary directory
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_warmup_requests", interrupt)
    base = tmp_path / "exports"
    with pytest.raises(KeyboardInterrupt):
        export.export_run(sentiment_run.run_dir, base)
    assert written == [True]  # it was interrupted mid-way, with a SavedModel half-published
    assert not base.exists()  # created by the export, so removed with it
    base.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export.export_run(sentiment_run.run_dir, base)
    assert list(base.iterdir()) == []  # there before: kept, and empty


def test_export_of_a_missing_or_corrupt_run(tmp_path, sentiment_run):
    with pytest.raises(RunDirError, match="not found"):
        export.export_run(tmp_path / "missing", tmp_path / "out")
    run_dir = shutil.copytree(sentiment_run.run_dir, tmp_path / "run")
    (run_dir / "config.json").write_text("{")
    with pytest.raises(RunDirError, match="corrupt"):
        export.export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even an empty --out directory


def test_export_to_an_unwritable_out_names_the_option(sentiment_run, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(RunDirError, match=r"cannot write to .*a_file/x \(--out\)"):
        export.export_run(sentiment_run.run_dir, tmp_path / "a_file" / "x")


def test_a_version_without_saved_model_does_not_hide_the_ones_before(sentiment_export, tmp_path):
    base = tmp_path / "exports"
    shutil.copytree(sentiment_export, base / "1")
    (base / "2").mkdir()  # being copied in: no saved_model.pb yet
    assert export.resolve_model_path(base) == ("export", base / "1")
    shutil.rmtree(base / "1")
    with pytest.raises(ModelPathError, match=r"no version directory \(2\) holds a saved_model.pb"):
        export.resolve_model_path(base)


def test_corrupt_export_is_a_clear_error(sentiment_export, tmp_path):
    broken = shutil.copytree(sentiment_export, tmp_path / "7")
    (broken / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelPathError, match="cannot load SavedModel"):
        export.load_serving(broken)


@pytest.mark.slow
def test_saved_model_cli_lists_the_signature(sentiment_export):
    cli = shutil.which("saved_model_cli") or str(
        __import__("pathlib").Path(PYTHON).parent / "saved_model_cli"
    )
    result = subprocess.run(
        [cli, "show", "--all", "--dir", str(sentiment_export)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "serving_default" in result.stdout and "DT_STRING" in result.stdout


def test_version_directories_read_zero_padded_names_as_tensorflow_serving_does(tmp_path):
    for name in ("3", "007", "0010", "10", "x", "4a"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert export.version_directories(tmp_path) == {
        3: tmp_path / "3",
        7: tmp_path / "007",
        10: tmp_path / "10",  # the plain name wins over 0010
    }
    assert export.numeric_versions(tmp_path) == [3, 7, 10]
    assert export.version_directories(tmp_path / "missing") == {}


def test_model_path_resolves_to_the_highest_complete_version(tmp_path, sentiment_export):
    shutil.copytree(sentiment_export, tmp_path / "007")
    (tmp_path / "8").mkdir()  # being copied in: no saved_model.pb yet
    assert export.resolve_model_path(tmp_path) == ("export", tmp_path / "007")
