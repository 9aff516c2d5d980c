"""Long texts: a classifier that reads in chunks (BPT3C) and keeps the head and the tail of
texts past max_length, trained, served in process, exported (SavedModel, LiteRT)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from helpers import PYTHON, SUBPROCESS_TIMEOUT, subprocess_env, tiny_config, train_tiny
from textrnn import export, sentiment
from textrnn.errors import ConfigError
from textrnn.tokenizers import encode_texts

LONG_TEXTS = [
    "a good film " * 30 + "but bad in the end",
    "bad " * 5 + "good " * 40,
    "good",
    "",
]
LONG_TEXT_SETTINGS = {
    "data.max_length": 32,
    "data.truncate": "head+tail",
    "model.chunk_length": 4,
    "model.pooling": "mean",
    "training.bptt_chunks": 2,
    "training.static_shapes": True,  # with jit_compile "auto": XLA, which chunked reading skips
}

# Runs in a fresh interpreter: only tensorflow and tensorflow_text, never textrnn.
LOAD_AND_CLASSIFY = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the ops the graph uses
loaded = tf.saved_model.load(sys.argv[1])
outputs = loaded.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps(outputs["probabilities"].numpy().astype(float).tolist()))
"""


@pytest.fixture(scope="module")
def long_text_run(sentiment_run, tmp_path_factory) -> Path:
    """A tiny unidirectional classifier that reads 32 tokens in chunks of 4, head + tail."""
    run_dir = tmp_path_factory.mktemp("long-texts") / "run"
    train_tiny(run_dir, sentiment_run.train, sentiment_run.valid, **LONG_TEXT_SETTINGS)
    return run_dir


def test_serving_reads_long_texts_as_training_did(long_text_run):
    run = sentiment.load_run(long_text_run)
    assert run.model.get_layer("rnn_stack").chunk_length == 4  # what --init-from finds
    ids = encode_texts(run.tokenizer, LONG_TEXTS, 32, "head+tail")
    whole = encode_texts(run.tokenizer, LONG_TEXTS[:1]).flat_values.numpy()  # 95 tokens
    kept = np.concatenate([whole[:8], whole[-24:]])  # a quarter from the head, the rest the tail
    np.testing.assert_array_equal(ids[0].numpy(), kept)
    assert ids[1].shape[0] == 32 and ids[2].shape[0] == 1
    expected = tf.nn.softmax(run.model(ids.to_tensor(), training=False)).numpy()
    parts = sentiment.serving_signatures(run)
    assert parts.manifest["truncate"] == "head+tail" and parts.manifest["chunk_length"] == 4
    served = parts.signatures["serving_default"](text=tf.constant(LONG_TEXTS))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)


def test_export_litert_refuses_a_tail_it_cannot_keep(long_text_run):
    from textrnn.edge.convert import export_litert

    with pytest.raises(ConfigError, match=r"keeps the 'head\+tail'.*sentiment export"):
        export_litert(long_text_run, long_text_run.parent / "litert")
    assert not (long_text_run.parent / "litert").exists()


def test_reading_in_chunks_needs_a_unidirectional_stack_and_bptt_needs_chunks(sentiment_run):
    with pytest.raises(ConfigError, match="bidirectional = false"):
        tiny_config(
            sentiment_run.train, **{"model.chunk_length": 4, "model.stack.bidirectional": True}
        )
    with pytest.raises(ConfigError, match="bptt_chunks needs model.chunk_length"):
        tiny_config(sentiment_run.train, **{"training.bptt_chunks": 2})
    with pytest.raises(ConfigError, match="data.truncate"):
        tiny_config(sentiment_run.train, **{"data.truncate": "middle"})


@pytest.mark.slow
def test_exports_of_a_chunked_reader_answer_as_the_run_does(long_text_run, tmp_path):
    """SavedModel in a fresh process (raw strings in); LiteRT (head truncation) on the host."""
    run = sentiment.load_run(long_text_run)
    serve = sentiment.serving_signatures(run).signatures["serving_default"]
    expected = serve(text=tf.constant(LONG_TEXTS))["probabilities"].numpy()
    version = export.export_run(long_text_run, tmp_path / "saved")
    result = subprocess.run(
        [PYTHON, "-c", LOAD_AND_CLASSIFY, str(version), json.dumps(LONG_TEXTS)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(served, expected, atol=1e-5)

    from textrnn.edge.convert import export_litert

    head_run = tmp_path / "head"
    train_tiny(
        head_run, run.config.data.train, run.config.data.valid,
        **{**LONG_TEXT_SETTINGS, "data.truncate": "head"},
    )  # fmt: skip
    litert = export.load_serving(export_litert(head_run, tmp_path / "litert"))
    saved = export.load_serving(export.export_run(head_run, tmp_path / "head_saved"))
    texts = ["a good film", "bad " * 20 + "good"]
    np.testing.assert_allclose(
        sentiment.predict(litert.signatures["serving_default"], texts)[1]["probability"],
        sentiment.predict(saved.signatures["serving_default"], texts)[1]["probability"],
        atol=1e-4,
    )
