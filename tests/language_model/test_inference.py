"""textrnn.language_model.inference: perplexity over every token; batched and streamed
generation agree."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import tensorflow as tf

from textrnn import export
from textrnn import language_model as lm_lib
from textrnn.decoding import stream_text
from textrnn.language_model.serving import manifest as lm_manifest
from textrnn.language_model.serving import signature_functions as lm_signatures
from textrnn.tasks import ServingParts
from textrnn.tokenizers import EOS_ID

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


def _without_chunks(serving: export.Serving) -> export.Serving:
    """The serving functions as an export from before `generate_chunk` offers them."""
    signatures = {k: v for k, v in serving.signatures.items() if k != "generate_chunk"}
    return dataclasses.replace(serving, signatures=signatures)


def test_in_graph_loop_equals_step_by_step(char_run: Path) -> None:
    serving = export.load_serving(char_run, expected_task="lm")
    options = lm_lib.GenerationOptions(
        max_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=5, num_samples=2
    )
    batched = lm_lib.generate_texts(serving, ["to be", "the"], options)
    for row, (prompt, text) in enumerate(batched):
        streamed = "".join(lm_lib.stream_tokens(_without_chunks(serving), prompt, options, row=row))
        assert streamed == text
    assert len({text for _, text in batched}) > 1


def _drain(stream) -> tuple[list[str], int]:
    """A `stream_tokens` generator's pieces and its return value (the token count)."""
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            return pieces, stop.value


def _assert_streams_equal_generate(serving, options) -> list[int]:
    """Streamed (the way `serving` offers) and batched texts agree; the token counts."""
    counts = []
    batched = lm_lib.generate_texts(serving, ["to be", "the"], options)
    for row, (prompt, text) in enumerate(batched):
        pieces, count = _drain(lm_lib.stream_tokens(serving, prompt, options, row=row))
        assert "".join(pieces) == text
        assert count == len(text)  # one character a token
        if "generate_chunk" in serving.signatures:  # chunks of 1, 2, 4, 8, 16, 9 tokens
            assert len(pieces) <= 6  # a piece per chunk at most
        counts.append(count)
    return counts


@pytest.mark.parametrize(
    "knobs",
    [
        {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
        {"temperature": 0.0, "top_k": 0, "top_p": 1.0},
        {"temperature": 0.8, "top_k": 5, "top_p": 0.9},
    ],
)
def test_chunked_stream_equals_generate(char_run: Path, knobs: dict) -> None:
    serving = export.load_serving(char_run, expected_task="lm")
    assert "generate_chunk" in serving.signatures
    for seed in (1, 2):
        options = lm_lib.GenerationOptions(max_tokens=40, seed=seed, num_samples=2, **knobs)
        _assert_streams_equal_generate(serving, options)


def test_streams_whose_window_moves_equal_generate(char_run: Path, monkeypatch) -> None:
    # A window of 4 ids: a stream sends only the last few ids as `previous` (chunks) or
    # detokenizes only them (token by token); the text is still `generate`'s.
    monkeypatch.setattr(stream_text, "DEFAULT_WINDOW", 4)
    moves = []
    move = stream_text.StreamText.move
    monkeypatch.setattr(
        stream_text.StreamText, "move", lambda self, text: moves.append(move(self, text))
    )
    serving = export.load_serving(char_run, expected_task="lm")
    options = lm_lib.GenerationOptions(max_tokens=40, temperature=0.9, seed=3, num_samples=2)
    _assert_streams_equal_generate(serving, options)
    _assert_streams_equal_generate(_without_chunks(serving), options)
    assert moves and all(moves)  # the windows moved: characters join at any boundary


def test_chunked_stream_stops_at_eos_inside_a_chunk(char_run: Path) -> None:
    """A model that draws [EOS] about one step in twelve: the stream stops where
    `generate` stops, also mid-chunk, and the fallback through `step` agrees."""
    run = lm_lib.load_run(char_run)  # weights in memory only: the run stays as it is
    lm = lm_lib.LanguageModel(run.model, run.tokenizer, continuous=False)  # [EOS] allowed
    logits, _ = lm.prime(tf.constant(["to be"]))
    others = tf.reduce_logsumexp(tf.concat([logits[0, :EOS_ID], logits[0, EOS_ID + 1 :]], 0))
    bias = run.model.get_layer("embedding").output_bias
    bias.assign(tf.tensor_scatter_nd_add(bias, [[EOS_ID]], [others - logits[0, EOS_ID] - 2.5]))
    serving = export.Serving(
        task="lm",
        path=char_run,
        signatures=lm_signatures(lm),
        source="run",
        manifest=lm_manifest(run, lm),
    )
    inside = 0  # streams whose [EOS] is not the last token of its chunk
    for seed in range(3):
        for knobs in ({"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.95}):
            options = lm_lib.GenerationOptions(max_tokens=40, seed=seed, num_samples=2, **knobs)
            counts = _assert_streams_equal_generate(serving, options)
            inside += sum(c < 40 and c + 1 not in (1, 3, 7, 15, 31) for c in counts)
            if seed == 0:  # token by token is slow: one seed is enough
                assert counts == _assert_streams_equal_generate(_without_chunks(serving), options)
    assert inside > 0


def test_chunks_continue_where_the_previous_stopped(char_parts: ServingParts) -> None:
    """`generate_chunk` by hand: one chunk of 12 equals chunks of 5 then 7 from step 5."""
    signatures = char_parts.signatures
    primed = signatures["tokenize"](text=tf.constant(["to be"]))
    logits = states = None
    states = primed["initial_states"]
    for token in primed["token_ids"].numpy()[0]:
        out = signatures["step"](token_ids=tf.constant([token]), states=states)
        logits, states = out["logits"], out["states"]
    knobs = {
        "temperature": tf.constant(1.5),
        "top_k": tf.constant(0),
        "top_p": tf.constant(1.0),
        "seed": tf.constant(9, tf.int64),
        "row": tf.constant(3),
    }

    def chunk(logits, states, start, tokens, previous):
        return signatures["generate_chunk"](
            logits=logits,
            states=states,
            start=tf.constant(start),
            tokens=tf.constant(tokens),
            previous=previous,
            **knobs,
        )

    whole = chunk(logits, states, 0, 12, tf.zeros([1, 0], tf.int32))
    first = chunk(logits, states, 0, 5, tf.zeros([1, 0], tf.int32))
    second = chunk(first["logits"], first["states"], 5, 7, first["token_ids"])
    ids = tf.concat([first["token_ids"], second["token_ids"]], axis=1).numpy()
    assert ids.tolist() == whole["token_ids"].numpy().tolist()
    assert second["text"].numpy()[0] == whole["text"].numpy()[0]
    assert whole["token_ids"].shape[1] == 12  # a high temperature: no [EOS] this early
