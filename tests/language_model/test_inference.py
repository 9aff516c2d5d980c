"""textrnn.language_model.inference: perplexity over every token; batched and streamed
generation agree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tensorflow as tf

from textrnn import export
from textrnn import language_model as lm_lib
from textrnn.tasks import ServingParts

from .tiny_lm import TEXT


def test_uniform_model_perplexity_is_the_vocabulary_size(char_run: Path) -> None:
    run = lm_lib.load_run(char_run)
    embedding = run.model.get_layer("embedding")
    embedding.embeddings.assign(tf.zeros_like(embedding.embeddings))  # tied: logits = 0 + bias
    embedding.output_bias.assign(tf.zeros_like(embedding.output_bias))
    lm = lm_lib.LanguageModel.from_run(run)
    corpus = lm_lib.encode_corpus(run.tokenizer, TEXT[:500], "continuous")
    metrics = lm_lib.evaluate_corpus(lm, corpus, batch_size=3)
    vocabulary_size = run.tokenizer.vocabulary_size
    assert metrics["tokens"] == 500
    assert metrics["perplexity"] == pytest.approx(vocabulary_size, rel=1e-4)
    assert metrics["bits_per_character"] == pytest.approx(math.log2(vocabulary_size), rel=1e-4)


def test_evaluate_counts_every_token_and_matches_score(
    char_run: Path, char_parts: ServingParts, corpus_file: Path
) -> None:
    metrics = lm_lib.evaluate(char_run, str(corpus_file), batch_size=1)
    assert metrics["tokens"] == len(TEXT) and metrics["characters"] == len(TEXT)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nats_per_token"]))
    # One stream, one row: the same as scoring the whole text as one line.
    scored = char_parts.signatures["score"](text=tf.constant([TEXT]))
    assert float(scored["num_tokens"][0]) == len(TEXT)
    assert -float(scored["log_likelihood"][0]) / len(TEXT) == pytest.approx(
        metrics["nats_per_token"], rel=1e-4
    )
    # More rows only add cold starts: every token is still counted.
    assert lm_lib.evaluate(char_run, str(corpus_file), batch_size=7)["tokens"] == len(TEXT)


def test_in_graph_loop_equals_step_by_step(char_run: Path) -> None:
    serving = export.load_serving(char_run, expected_task="lm")
    options = lm_lib.GenerationOptions(
        max_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=5, num_samples=2
    )
    batched = lm_lib.generate_texts(serving, ["to be", "the"], options)
    for row, (prompt, text) in enumerate(batched):
        streamed = "".join(lm_lib.stream_tokens(serving, prompt, options, row=row))
        assert streamed == text
    assert len({text for _, text in batched}) > 1
