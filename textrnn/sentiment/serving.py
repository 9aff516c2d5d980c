"""What a classifier exports: raw text in, label and probabilities out.

`serving_default` takes `text` (tf.string [batch]) and returns `label`,
`probability`, `probabilities` and `classes`; `classify` is TensorFlow
Serving's Classify API (serialized `tf.Example`s with a `text` feature).
Tokenization and the label names are inside the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.sentiment.run import SentimentRun
from textrnn.tasks import ServingParts

WARMUP_TEXTS = [b"a warm-up sentence", b""]


def classification_signatures(run: SentimentRun) -> dict[str, Any]:
    """`serving_default`: text tf.string [batch] -> label, probabilities, classes; `classify`."""
    model, tokenizer = run.model, run.tokenizer
    names = tf.constant(list(run.labels.names))
    max_length, truncate = run.config.data.max_length, run.config.data.truncate

    def classify_text(text: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = tokenizer.encode_padded(text, max_length, truncate)  # (batch, time)
        probabilities = tf.nn.softmax(
            tf.cast(model(ids, training=False), tf.float32)
        )  # (batch, classes)
        best = tf.argmax(probabilities, axis=-1)
        batch = tf.shape(text)[0]
        return {
            "label": tf.gather(names, best),
            "probability": tf.reduce_max(probabilities, axis=-1),
            "probabilities": probabilities,
            "classes": tf.tile(names[tf.newaxis, :], [batch, 1]),
        }

    serve = tf.function(
        classify_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def classify(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        # TensorFlow Serving's Classify API: serialized tf.Example with a "text" bytes feature.
        # Required: an example without it is a client's mistake, not an empty review.
        features = tf.io.parse_example(examples, {"text": tf.io.FixedLenFeature([], tf.string)})
        outputs = classify_text(features["text"])
        return {"classes": outputs["classes"], "scores": outputs["probabilities"]}

    return {"serving_default": serve, "classify": classify}


def serving_signatures(run: SentimentRun) -> ServingParts:
    """The signatures, what the SavedModel tracks, the manifest and a warm-up request."""
    manifest = {
        "labels": list(run.labels.names),
        "max_length": run.config.data.max_length,
        "tokenizer": run.tokenizer.settings(),
    }
    # Long-text settings, named only when a run uses them (manifests stay as they were).
    if run.config.data.truncate != "head":
        manifest["truncate"] = run.config.data.truncate
    if run.config.model.chunk_length:
        manifest["chunk_length"] = run.config.model.chunk_length
    return ServingParts(
        signatures=classification_signatures(run),
        resources=[run.model, run.tokenizer],
        manifest=manifest,
        warmup_requests=[("serving_default", {"text": np.array(WARMUP_TEXTS, dtype=object)})],
    )
