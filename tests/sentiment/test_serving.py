"""serving_signatures: what a classifier exports, and that it sees what training saw."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textrnn import sentiment
from textrnn.tokenizers import encode_texts


def test_training_tokenization_matches_serving(sentiment_run):
    """The ids the model trained on (data pipeline) give the probabilities serving gives."""
    run = sentiment.load_run(sentiment_run.run_dir)
    texts = ["A GOOD film!!", "bad, bad; BAD", "Café crème", "good " * 50, "unseen words here", "x"]
    ids = encode_texts(run.tokenizer, texts, run.config.data.max_length)
    assert max(ids.row_lengths().numpy()) == run.config.data.max_length  # truncated in training too

    expected = tf.nn.softmax(run.model(ids.to_tensor(), training=False)).numpy()
    parts = sentiment.serving_signatures(run)
    served = parts.signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)


def test_serving_parts_hold_signatures_resources_manifest_and_warmup(sentiment_run):
    run = sentiment.load_run(sentiment_run.run_dir)
    parts = sentiment.serving_signatures(run)
    assert set(parts.signatures) == {"serving_default", "classify"}
    assert parts.resources == [run.model, run.tokenizer]
    assert parts.manifest == {
        "labels": ["0", "1"],
        "max_length": run.config.data.max_length,
        "tokenizer": run.tokenizer.settings(),
    }
    [(signature, inputs)] = parts.warmup_requests
    assert signature == "serving_default"
    assert list(inputs["text"]) == [b"a warm-up sentence", b""]
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"good"]))}
        )
    )
    classified = parts.signatures["classify"](examples=tf.constant([example.SerializeToString()]))
    assert classified["classes"].numpy().tolist() == [[b"0", b"1"]]
    assert np.isclose(classified["scores"].numpy().sum(), 1.0, atol=1e-5)
