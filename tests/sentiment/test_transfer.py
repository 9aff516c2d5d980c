"""--init-from: a language model's vocabulary, embedding and RNNStack weights, copied exactly.

The language-model runs here are built through the task table (tests may use
any task; the sentiment package itself never imports the language model) and
saved untrained: random weights make the copy check meaningful, and no
training is needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import sentiment_rows, train_tiny, write_tsv
from textrnn import sentiment, tasks
from textrnn.config import load_config
from textrnn.errors import ConfigError, RunDirError
from textrnn.sentiment.transfer import copy_tokenizer
from textrnn.tokenizers import build_tokenizer
from textrnn.training.run_dir import save_config

TEXTS = [text for text, _ in sentiment_rows(40, seed=1)]


def make_lm_run(directory: Path, **overrides):
    """An untrained language-model run (config, vocabulary, weights); returns its model."""
    task = tasks.find("language_model").load()
    values = {"tokenizer.kind": "word", "model.embedding_dim": 8, "model.stack.units": 4}
    config = load_config(task.config_class, None, {**values, **overrides})
    directory.mkdir(parents=True)
    tokenizer = build_tokenizer(config.tokenizer, TEXTS, directory)
    model = task.build_model(config, tokenizer, compile=False)
    model.save_weights(directory / "model.weights.h5")
    save_config(directory, config)
    return model


def init_classifier(lm_dir: Path, run_dir: Path, **overrides):
    """A classifier built with --init-from `lm_dir` (its vocabulary copied to `run_dir`)."""
    values = {"data.train": "train.tsv", "model.embedding_dim": 8, "model.stack.units": 4}
    config = load_config(sentiment.Config, None, {**values, **overrides})
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = copy_tokenizer(lm_dir, run_dir)
    return sentiment.build_model(config, tokenizer, init_from=str(lm_dir), compile=False)


def assert_copied(model, lm_model) -> None:
    np.testing.assert_array_equal(
        model.get_layer("embedding").get_weights()[0],
        lm_model.get_layer("embedding").get_weights()[0],
    )
    stack = model.get_layer("rnn_stack")
    lm_layers = lm_model.get_layer("rnn_stack").recurrent_layers
    for ours, theirs in zip(stack.recurrent_layers, lm_layers, strict=True):
        target = ours.forward_layer if stack.bidirectional else ours
        copied, expected = target.get_weights(), theirs.get_weights()
        assert len(copied) == len(expected)
        for a, b in zip(copied, expected, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("lm", "classifier"),
    [
        ({}, {}),
        ({}, {"model.stack.bidirectional": True, "model.pooling": "max"}),
        ({"model.stack.cell": "gru", "model.stack.num_layers": 2}, {}),
        ({"model.stack.cell": "rnn", "model.stack.num_layers": 2}, {}),
        ({"model.stack.num_layers": 2, "model.tie_embeddings": True}, {}),
        ({"model.stack.num_layers": 2}, {"model.chunk_length": 4, "model.pooling": "mean"}),
    ],
    ids=["lstm", "bidirectional", "gru-2", "rnn-2", "tied-2", "chunked-2"],
)
def test_init_from_copies_embedding_and_stack_exactly(tmp_path, lm, classifier):
    lm_model = make_lm_run(tmp_path / "lm", **lm)
    stack = {k: v for k, v in lm.items() if k.startswith("model.stack.")}
    model = init_classifier(tmp_path / "lm", tmp_path / "run", **stack, **classifier)
    assert (tmp_path / "run" / "vocab.txt").read_text() == (tmp_path / "lm/vocab.txt").read_text()
    assert_copied(model, lm_model)


def test_init_from_reads_older_files_that_name_the_fast_layers(tmp_path):
    lm_model = make_lm_run(tmp_path / "lm", **{"model.stack.num_layers": 2})
    with h5py.File(tmp_path / "lm" / "model.weights.h5", "r+") as file:
        group = file["layers/rnn_stack/recurrent_layers"]
        for name in list(group):  # lstm, lstm_1 -> fast_lstm, fast_lstm_1 (the old layout)
            group.move(name, "fast_" + name)
    model = init_classifier(tmp_path / "lm", tmp_path / "run", **{"model.stack.num_layers": 2})
    assert_copied(model, lm_model)


def test_init_from_falls_back_to_a_checkpoint(tmp_path):
    lm_dir = tmp_path / "lm"
    lm_model = make_lm_run(lm_dir)
    (lm_dir / "checkpoints").mkdir()
    shutil.copyfile(lm_dir / "model.weights.h5", lm_dir / "checkpoints" / "best.weights.h5")
    (lm_dir / "model.weights.h5").write_bytes(b"not an hdf5 file")
    assert_copied(init_classifier(lm_dir, tmp_path / "run"), lm_model)


def _set_units(lm_dir: Path, units: int) -> None:
    saved = json.loads((lm_dir / "config.json").read_text())
    saved["model"]["stack"]["units"] = units
    (lm_dir / "config.json").write_text(json.dumps(saved))


def _damage_all(lm_dir: Path) -> None:
    (lm_dir / "model.weights.h5").write_bytes(b"\x89HDF\r\n garbage")


@pytest.mark.parametrize(
    ("damage", "classifier", "error", "match"),
    [
        (None, {"model.stack.units": 6}, ConfigError, r"model\.stack\.units 6 vs 4"),
        (None, {"model.embedding_dim": 6}, ConfigError, r"model\.embedding_dim 6 vs 8"),
        (None, {"model.stack.cell": "gru"}, ConfigError, r"model\.stack\.cell gru vs lstm"),
        (
            None,
            {"model.stack.bidirectional": True, "model.stack.num_layers": 2},
            ConfigError,
            "bidirectional with more than one layer",
        ),
        (lambda d: _set_units(d, 6), {"model.stack.units": 6}, RunDirError, "do not fit"),
        (_damage_all, {}, RunDirError, "every weights file is damaged"),
        (lambda d: (d / "model.weights.h5").unlink(), {}, RunDirError, "no trained weights"),
        (
            lambda d: (d / "config.json").write_text('{"task": "sentiment"}'),
            {},
            RunDirError,
            "holds a 'sentiment' run, not a language model",
        ),
    ],
    ids=["units", "width", "cell", "bidirectional", "unfit", "damaged", "missing", "task"],
)
def test_init_from_mismatches_are_clear_errors(tmp_path, damage, classifier, error, match):
    lm_dir = tmp_path / "lm"
    make_lm_run(lm_dir)
    if damage:
        damage(lm_dir)
    with pytest.raises(error, match=match):
        init_classifier(lm_dir, tmp_path / "run", **classifier)


def test_init_from_needs_the_language_models_vocabulary(tmp_path):
    lm_dir = tmp_path / "lm"
    make_lm_run(lm_dir)
    config = load_config(sentiment.Config, None, {"model.embedding_dim": 8, "model.stack.units": 4})
    tokenizer = build_tokenizer(config.tokenizer, ["other words"], tmp_path)
    with pytest.raises(ConfigError, match="vocabulary differs from this run's"):
        sentiment.build_model(config, tokenizer, init_from=str(lm_dir), compile=False)


def test_copy_tokenizer_needs_a_run_with_a_vocabulary(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RunDirError, match="is not a language-model run directory"):
        copy_tokenizer(tmp_path / "nothing", tmp_path / "run")
    make_lm_run(tmp_path / "lm")
    (tmp_path / "lm" / "vocab.txt").unlink()
    with pytest.raises(RunDirError, match=r"missing vocab\.txt \(--init-from\)"):
        copy_tokenizer(tmp_path / "lm", tmp_path / "run")


@pytest.mark.slow
def test_train_with_init_from_end_to_end(tmp_path):
    lm_dir = tmp_path / "lm"
    make_lm_run(lm_dir)
    train_tsv = write_tsv(tmp_path / "train.tsv", sentiment_rows(40, seed=1))
    metrics = train_tiny(tmp_path / "full", train_tsv, **{"model.init_from": str(lm_dir)})
    assert "val_accuracy" in metrics
    assert (tmp_path / "full" / "vocab.txt").read_text() == (lm_dir / "vocab.txt").read_text()
    with pytest.raises(ConfigError, match="model.stack.units"):
        train_tiny(
            tmp_path / "bad", train_tsv, **{"model.stack.units": 6, "model.init_from": str(lm_dir)}
        )
    assert not (tmp_path / "bad").exists()
