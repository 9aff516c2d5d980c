"""Using a trained language model: perplexity over a file, and generating text.

`evaluate(run_dir, data_path)` scores every token of a file (states carried
along a stream). The generation functions take a `Serving` (`textrnn.export.
load_serving`: an export or a run directory, the same signatures either way)
and a `GenerationOptions`:

    generate_texts   one batched call of the in-graph sampling loop
    stream_tokens    the same text, piece by piece, through `tokenize` / `step` /
                     `detokenize`, sampling here with the same seeds
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.decoding import sampling
from textrnn.decoding.options import MAX_TOKENS_CAP, SamplingOptions
from textrnn.decoding.stream_text import StreamText
from textrnn.errors import ConfigError, DataError
from textrnn.language_model.data import (
    Corpus,
    contiguous_batches,
    encode_corpus,
    read_corpus_text,
)
from textrnn.language_model.generation import LanguageModel
from textrnn.language_model.run import load_run
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID

EVALUATE_SEQ_LEN = 256  # time steps per evaluation call (states carried between calls)

# ----------------------------------------------------------------------------- evaluation


def evaluate_corpus(lm: LanguageModel, corpus: Corpus, batch_size: int = 32) -> dict[str, float]:
    """Cross-entropy over every target token of `corpus` (states carried along streams)."""
    chunk = tf.function(lm.chunk_loss, reduce_retracing=True)
    total = count = 0.0
    if lm.continuous:
        stream_rows = max(1, min(batch_size, math.ceil(corpus.num_tokens / EVALUATE_SEQ_LEN)))
        states = lm.zero_states(stream_rows)
        for x, y in contiguous_batches(
            corpus.inputs[0], corpus.targets[0], stream_rows, EVALUATE_SEQ_LEN
        ):
            nats, n, states = chunk(tf.constant(x), tf.constant(y), states)
            total += float(nats)
            count += float(n)
    else:
        order = np.argsort([len(x) for x in corpus.inputs])
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(corpus.inputs[i]) for i in rows)
            x = np.zeros((len(rows), width), np.int32)
            y = np.zeros((len(rows), width), np.int32)
            for j, i in enumerate(rows):
                x[j, : len(corpus.inputs[i])] = corpus.inputs[i]
                y[j, : len(corpus.targets[i])] = corpus.targets[i]
            nats, n, _ = chunk(tf.constant(x), tf.constant(y), lm.zero_states(len(rows)))
            total += float(nats)
            count += float(n)
    nats_per_token = total / max(count, 1.0)
    return {
        "nats_per_token": nats_per_token,
        "perplexity": math.exp(nats_per_token),
        "bits_per_token": nats_per_token / math.log(2),
        "bits_per_character": total / math.log(2) / max(corpus.characters, 1),
        "tokens": int(count),
        "characters": corpus.characters,
        "unknown_tokens": corpus.unknown,
    }


def evaluate(
    run_dir: str | os.PathLike, data_path: str, encoding: str | None = None, batch_size: int = 32
) -> dict[str, Any]:
    """Nats per token, perplexity and bits per character over every token of `data_path`."""
    run = load_run(run_dir)
    config, tokenizer = run.config, run.tokenizer
    text = read_corpus_text(data_path, encoding or config.data.encoding, "--data")
    corpus = encode_corpus(tokenizer, text, config.data.layout)
    if corpus.num_tokens == 0:
        raise DataError(f"{data_path}: no tokens to evaluate (--data)")
    metrics = evaluate_corpus(LanguageModel.from_run(run), corpus, batch_size)
    metrics.update(
        {
            "tokenizer": tokenizer.kind,
            "layout": config.data.layout,
            "skipped_empty_lines": corpus.skipped_empty,
        }
    )
    return metrics


# ----------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenerationOptions(SamplingOptions):
    """Request-time knobs of `generate`: the sampling knobs, and samples per prompt."""

    num_samples: int = 1


def check_options(serving: Any, options: GenerationOptions) -> None:
    """Raise `ConfigError` naming the option when a knob is out of range for this model."""
    vocabulary_size = int(serving.manifest.get("tokenizer", {}).get("vocabulary_size", 0))
    options.check(vocabulary_size, int(serving.manifest.get("max_tokens_cap", MAX_TOKENS_CAP)))
    if options.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {options.num_samples}")


def count_prompt_unknown(serving: Any, prompts: list[str]) -> int:
    """How many prompt tokens map to `[UNK]` (unseen in training)."""
    if not prompts:
        return 0
    outputs = serving.signatures["tokenize"](text=tf.constant(prompts, tf.string))
    return int(tf.reduce_sum(outputs["unknown"]))


def generate_texts(
    serving: Any, prompts: list[str], options: GenerationOptions
) -> list[tuple[str, str]]:
    """`(prompt, continuation)` for each prompt and sample, rows in the order prompt-major.

    Row r of the batch (prompt r // num_samples) draws the same noise as
    `stream_tokens(..., row=r)`, so both give the same text for one seed.
    """
    rows = [p for p in prompts for _ in range(options.num_samples)]
    outputs = serving.signatures["generate"](
        prompt=tf.constant(rows, tf.string),
        max_tokens=tf.constant(options.max_tokens, tf.int32),
        temperature=tf.constant(options.temperature, tf.float32),
        top_k=tf.constant(options.top_k, tf.int32),
        top_p=tf.constant(options.top_p, tf.float32),
        seed=tf.constant(options.resolved_seed(), tf.int64),
    )
    texts = [t.decode("utf-8", errors="replace") for t in outputs["text"].numpy()]
    return list(zip(rows, texts, strict=False))


# Eagerly, `sample_logits` runs its ~30 small ops one by one: ~25 ms a token on this busy
# 2-core machine. Compiled once with XLA (as the in-graph `generate` loop samples; the
# draws are the same, tests/decoding/test_sampling.py) it took ~1.5 ms, which the
# server's streams and `generate --stream` feel.
_sample_logits = tf.function(sampling.sample_logits, jit_compile=True)


def _prime(signatures: dict[str, Any], prompt: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Feed `[BOS]` and the prompt through `step`: logits `(1, vocabulary)`, packed states."""
    primed = signatures["tokenize"](text=tf.constant([prompt], tf.string))
    ids = primed["token_ids"].numpy()[0][: int(primed["lengths"].numpy()[0])]
    states = primed["initial_states"]
    outputs = None
    for token in ids:  # consume [BOS] and the prompt
        outputs = signatures["step"](token_ids=tf.constant([token], tf.int32), states=states)
        states = outputs["states"]
    return outputs["logits"], states


# `generate_chunk` sizes: the first chunk is one token, so it shows as soon as the prompt
# is read; then each chunk doubles (fewer model calls per token) up to this many tokens.
MAX_CHUNK_TOKENS = 64


def stream_tokens(
    serving: Any, prompt: str, options: GenerationOptions, row: int = 0
) -> Generator[str, None, int]:
    """Yield the continuation of `prompt` piece by piece; the generator's return value is
    the number of tokens generated.

    With the export's `generate_chunk` signature, tokens come a chunk at a time (1, 2,
    4, ... up to `MAX_CHUNK_TOKENS`) from the in-graph loop; older exports sample here
    token by token through `step`. Both draw the same noise per decoding step as the
    batched `generate`; `row` is the row this sample would have in a batched `generate`
    call (its noise depends on it), so the text is the same.
    """
    signatures = serving.signatures
    seed = options.resolved_seed()
    logits, states = _prime(signatures, prompt)  # (1, vocabulary), (1, num_states, units)
    if "generate_chunk" in signatures:
        return (yield from _stream_chunks(signatures, logits, states, options, seed, row))
    return (yield from _stream_steps(serving, logits, states, options, seed, row))


def _decoded(text_tensor: Any) -> str:
    """The one string of a `(1,)` text output."""
    return np.asarray(text_tensor)[0].decode("utf-8", errors="replace")


def _detokenizer(signatures: dict[str, Any]):
    """The export's `detokenize` for one stream's ids, as `StreamText.move_if_due` takes it."""

    def detokenize(ids: list[int]) -> str:
        return _decoded(signatures["detokenize"](token_ids=tf.constant([ids], tf.int32))["text"])

    return detokenize


def _stream_chunks(
    signatures: dict[str, Any], logits, states, options: GenerationOptions, seed: int, row: int
) -> Generator[str, None, int]:
    """The continuation through `generate_chunk`: one model call per chunk."""
    knobs = {
        "temperature": tf.constant(options.temperature, tf.float32),
        "top_k": tf.constant(options.top_k, tf.int32),
        "top_p": tf.constant(options.top_p, tf.float32),
        "seed": tf.constant(seed, tf.int64),
        "row": tf.constant(row, tf.int32),
    }
    text = StreamText()  # `previous` is its window: the cost of a chunk stays flat
    detokenize = _detokenizer(signatures)
    size = 1
    while len(text) < options.max_tokens:
        tokens = min(size, options.max_tokens - len(text))
        outputs = signatures["generate_chunk"](
            logits=logits,
            states=states,
            start=tf.constant(len(text), tf.int32),
            tokens=tf.constant(tokens, tf.int32),
            previous=tf.constant([text.tail], tf.int32),
            **knobs,
        )
        ids = np.asarray(outputs["token_ids"])[0]  # (<= tokens,); ends at [EOS] if drawn
        stopped = len(ids) > 0 and ids[-1] == EOS_ID
        text.extend(ids[: len(ids) - int(stopped)])
        piece = text.update(_decoded(outputs["text"]))
        if piece:
            yield piece
        if stopped or len(ids) < tokens:
            break
        text.move_if_due(detokenize)
        logits, states = outputs["logits"], outputs["states"]
        size = min(size * 2, MAX_CHUNK_TOKENS)
    return len(text)


def _stream_steps(
    serving: Any, logits, states, options: GenerationOptions, seed: int, row: int
) -> Generator[str, None, int]:
    """The continuation through `step` and `detokenize`, sampling here: exports from before
    `generate_chunk`. Three model calls per token."""
    signatures = serving.signatures
    vocabulary = int(logits.shape[-1])
    banned = np.zeros([vocabulary], bool)
    banned[serving.manifest.get("banned_ids", [PAD_ID, BOS_ID])] = True
    knobs = (
        tf.constant(options.temperature, tf.float32),
        tf.constant(options.top_k, tf.int32),
        tf.constant(options.top_p, tf.float32),
    )
    first_row = tf.constant(row, tf.int32)  # the noise row r of a batched `generate` draws
    banned = tf.constant(banned)
    text = StreamText()  # each token detokenizes its window, not the whole continuation
    detokenize = _detokenizer(signatures)
    for t in range(options.max_tokens):
        token = int(
            _sample_logits(
                logits, *knobs, sampling.step_seed(seed, t), first_row=first_row, banned=banned
            )[0]
        )
        if token == EOS_ID:
            return len(text)
        text.extend([token])
        piece = text.update(detokenize(text.tail))
        if piece:
            yield piece
        text.move_if_due(detokenize)
        outputs = signatures["step"](token_ids=tf.constant([token], tf.int32), states=states)
        logits, states = outputs["logits"], outputs["states"]
    return len(text)
