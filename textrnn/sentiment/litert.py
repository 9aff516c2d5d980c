"""What a classifier exports to LiteRT: token ids in, probabilities out, at fixed lengths.

One signature per length bucket, `classify_<L>`: `token_ids int32 [1, L]`
(right-padded with 0, which the model masks) -> `probabilities float32 [1, classes]`.
Buckets are 16, 32, 64, ... up to the maximum length (the run's `data.max_length`,
or `--max-length`): a short text runs a short loop. The weights are stored once;
the host (`textrnn.edge`) tokenizes, picks the smallest bucket that holds the ids,
and names the label. A model that reads in chunks (`model.chunk_length`) converts
as it is (its chunk loop becomes a WHILE subgraph); a run that keeps the end of long
texts (`data.truncate`) does not, since the host keeps their head.
"""

from __future__ import annotations

import tensorflow as tf

from textrnn.errors import ConfigError
from textrnn.sentiment.run import SentimentRun
from textrnn.tasks import LiteRTParts

SMALLEST_BUCKET = 16


def length_buckets(max_length: int) -> list[int]:
    """16, 32, 64, ... below `max_length`, then `max_length` itself."""
    buckets, length = [], SMALLEST_BUCKET
    while length < max_length:
        buckets.append(length)
        length *= 2
    return buckets + [max_length]


def litert_functions(run: SentimentRun, max_length: int | None = None) -> LiteRTParts:
    """`classify_<L>` for each length bucket, with the manifest the host runtime reads."""
    longest = max_length or run.config.data.max_length
    if longest < 1:
        raise ConfigError(f"--max-length must be at least 1, got {longest}")
    if run.config.data.truncate != "head":
        raise ConfigError(
            f"export-litert: this run keeps the {run.config.data.truncate!r} of long texts "
            "(data.truncate) and the LiteRT host keeps their head; export it with "
            "`sentiment export` (SavedModel) instead"
        )
    model = run.model

    def classify_at(length: int):
        @tf.function(
            input_signature=[tf.TensorSpec([1, length], tf.int32, name="token_ids")],
            jit_compile=False,
        )
        def classify(token_ids):
            logits = tf.cast(model(token_ids, training=False), tf.float32)  # (1, classes)
            return {"probabilities": tf.nn.softmax(logits)}

        return classify

    buckets = length_buckets(longest)
    return LiteRTParts(
        functions={f"classify_{length}": classify_at(length) for length in buckets},
        resources=[model],
        tokenizers={"text": run.tokenizer},
        manifest={
            "labels": list(run.labels.names),
            "max_length": longest,
            "length_buckets": buckets,
        },
    )
