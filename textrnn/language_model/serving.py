"""What a language model exports: its signatures, manifest and warm-up request.

Signatures (strings in, strings out; `serving_default` is `generate`):

    generate    prompt [batch], max_tokens, temperature, top_k, top_p, seed
                -> text [batch], num_tokens [batch]
    score       text [batch] -> log_likelihood, perplexity, num_tokens
    step        token_ids [batch], states [batch, num_states, units] -> logits, states
    tokenize    text [batch] -> token_ids ([BOS] + tokens), lengths, unknown, initial_states
    detokenize  token_ids [batch, time] -> text
    generate_chunk  logits [1, vocabulary], states [1, num_states, units], start, tokens,
                temperature, top_k, top_p, seed, row, previous [1, time]
                -> token_ids [1, <= tokens], logits, states, text [1]
    prime       prompt [batch] -> logits [batch, vocabulary], states [batch, num_states, units]
    generate_rows  logits [batch, vocabulary], states, start [batch], tokens [batch],
                temperature [batch], top_k [batch], top_p [batch], seed [batch], row [batch],
                previous [batch, time] -> token_ids [batch, <= 64], num_tokens [batch],
                logits, states, text [batch]

`tokenize`, `step` and `detokenize` let a client sample token by token
(`inference.stream_tokens`) with the same noise as the in-graph loop;
`generate_chunk` runs that loop for a few tokens of one stream at a time
(decoding steps start, start + 1, ... of batch row `row`), so a stream costs
one call per chunk instead of three per token. `prime` reads prompts as
`generate` does (one call, not one `step` per token), and `generate_rows` runs
the loop for many streams at once, each row at its own step with its own knobs
and seed (the server's `:generate_stream` merges its concurrent streams so).
Exports older than `generate_rows` stream through `generate_chunk`, older
still through `step`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.decoding.sampling import MAX_TOKENS_CAP
from textrnn.language_model.generation import ROWS_CAPACITY, LanguageModel
from textrnn.language_model.run import LanguageModelRun
from textrnn.tasks import ServingParts
from textrnn.tokenizers import EOS_ID, PAD_ID, UNK_ID

# TensorFlow Serving replays it at load time, so the first user request does not trace.
WARMUP_REQUESTS = [
    (
        "serving_default",
        {
            "prompt": np.array([b"The ", b""], dtype=object),
            "max_tokens": np.int32(8),
            "temperature": np.float32(1.0),
            "top_k": np.int32(0),
            "top_p": np.float32(1.0),
            "seed": np.int64(0),
        },
    )
]


def serving_signatures(run: LanguageModelRun) -> ServingParts:
    """The export of `run`: signatures, the objects they use, manifest, warm-up request."""
    lm = LanguageModel.from_run(run)
    return ServingParts(
        signatures=signature_functions(lm),
        resources=[run.model, run.tokenizer],
        manifest=manifest(run, lm),
        # No `generate_chunk` warm-up: a server streams through `generate_rows` (its
        # sizes compile at load, ~2 s each); `generate --stream` loads no warm-up.
        warmup_requests=list(WARMUP_REQUESTS) + rows_warmup_requests(lm),
        inference=lm,
    )


# The batch sizes `generate_rows` is called with: a server pads its rows to the next one
# (XLA compiles the loop once per batch size, ~1 s each, so each is warmed up at load).
ROWS_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def rows_warmup_requests(lm: LanguageModel) -> list[tuple[str, dict[str, Any]]]:
    """One `prime` request, and one `generate_rows` request per batch size in
    `ROWS_BATCH_SIZES` (one token each: the compilation is per shape, not per count)."""
    requests: list[tuple[str, dict[str, Any]]] = [
        ("prime", {"prompt": np.array([b"The "], dtype=object)})
    ]
    for batch in ROWS_BATCH_SIZES:
        inputs = {
            "logits": np.zeros([batch, lm.vocabulary_size], np.float32),
            "states": np.zeros([batch, lm.num_states, lm.stack.units], np.float32),
            "start": np.zeros([batch], np.int32),
            "tokens": np.ones([batch], np.int32),
            "temperature": np.ones([batch], np.float32),
            "top_k": np.zeros([batch], np.int32),
            "top_p": np.ones([batch], np.float32),
            "seed": np.zeros([batch], np.int64),
            "row": np.zeros([batch], np.int32),
            "previous": np.zeros([batch, 0], np.int32),
        }
        requests.append(("generate_rows", inputs))
    return requests


def manifest(run: LanguageModelRun, lm: LanguageModel) -> dict[str, Any]:
    """Settings a client needs to sample through `step` (`assets.extra/textrnn.json`)."""
    return {
        "layout": run.config.data.layout,
        "tokenizer": run.tokenizer.settings(),
        "num_states": lm.num_states,
        "units": run.config.model.stack.units,
        "max_tokens_cap": MAX_TOKENS_CAP,
        "eos_id": EOS_ID,
        "banned_ids": [int(i) for i in np.flatnonzero(lm.banned.numpy())],
        "rows_capacity": ROWS_CAPACITY,
        "rows_batch_sizes": list(ROWS_BATCH_SIZES),
    }


def signature_functions(lm: LanguageModel) -> dict[str, Any]:
    """generate (also serving_default), score, step, tokenize, detokenize, generate_chunk."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def generate(prompt, max_tokens, temperature, top_k, top_p, seed):
        return lm.generate(prompt, max_tokens, temperature, top_k, top_p, seed)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(text):
        return lm.score(text)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, lm.num_states, lm.stack.units], tf.float32, name="states"),
        ]
    )
    def step(token_ids, states):
        logits, new_states = lm.step(token_ids, lm.unpack(states))
        return {"logits": logits, "states": lm.pack(new_states)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(text):
        # [BOS] + tokens, right-padded with 0; what `step` consumes to prime on a prompt.
        ids = lm.prompt_ids(text)
        return {
            "token_ids": ids,
            "lengths": tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1),
            "unknown": tf.reduce_sum(tf.cast(ids == UNK_ID, tf.int32), axis=1),
            "initial_states": tf.zeros(
                [tf.shape(text)[0], lm.num_states, lm.stack.units], tf.float32
            ),
        }

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    def detokenize(token_ids):
        return {"text": lm.tokenizer.detokenize(token_ids)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, lm.vocabulary_size], tf.float32, name="logits"),
            tf.TensorSpec([None, lm.num_states, lm.stack.units], tf.float32, name="states"),
            tf.TensorSpec([], tf.int32, name="start"),
            tf.TensorSpec([], tf.int32, name="tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="row"),
            tf.TensorSpec([None, None], tf.int32, name="previous"),
        ]
    )
    def generate_chunk(
        logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
    ):
        return lm.generate_chunk(
            logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
        )

    signatures = {
        "serving_default": generate,
        "generate_chunk": generate_chunk,
        "generate": generate,
        "score": score,
        "step": step,
        "tokenize": tokenize,
        "detokenize": detokenize,
    }
    return {**signatures, **rows_functions(lm)}


def rows_functions(lm: LanguageModel) -> dict[str, Any]:
    """`prime` and `generate_rows`: what a server merging its streams into one batch calls."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def prime(prompt):
        logits, states = lm.prime(prompt)  # as `generate` reads its prompts
        return {"logits": logits, "states": lm.pack(states)}

    def per_row(dtype: tf.DType, name: str) -> tf.TensorSpec:
        return tf.TensorSpec([None], dtype, name=name)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, lm.vocabulary_size], tf.float32, name="logits"),
            tf.TensorSpec([None, lm.num_states, lm.stack.units], tf.float32, name="states"),
            per_row(tf.int32, "start"),
            per_row(tf.int32, "tokens"),
            per_row(tf.float32, "temperature"),
            per_row(tf.int32, "top_k"),
            per_row(tf.float32, "top_p"),
            per_row(tf.int64, "seed"),
            per_row(tf.int32, "row"),
            tf.TensorSpec([None, None], tf.int32, name="previous"),
        ]
    )
    def generate_rows(
        logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
    ):
        return lm.generate_rows(
            logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
        )

    return {"prime": prime, "generate_rows": generate_rows}
