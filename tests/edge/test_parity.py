"""LiteRT exports against the SavedModel signatures of the same run (float32, in process).

Targets of issue 16: outputs within 1e-4, identical greedy ids and sampled ids for one
seed, identical beam-1 (and beam-3) translations.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn import export
from textrnn.decoding import stream_text
from textrnn.edge.classifier import EdgeClassifier
from textrnn.edge.generator import EdgeLanguageModel, SamplingOptions
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.translator import EdgeTranslator

TOLERANCE = 1e-4
SENTIMENT_TEXTS = ["a good film", "A BAD, dull movie!", "", "great " * 40, "unseen wörds ¿"]
PROMPTS = ["", "the cat", "to be or not to be. the cat sat on mat 3."]
SOURCES = ["the dog runs", "a woman sings", "the child eats", "the cat", "", "a man"]


def test_sentiment_probabilities_match_the_savedmodel(sentiment_run, litert_sentiment):
    serve = export.load_serving(sentiment_run.run_dir).signatures["serving_default"]
    classifier = EdgeClassifier(EdgeExport.open(litert_sentiment))
    for text in SENTIMENT_TEXTS:
        expected = serve(text=tf.constant([text]))["probabilities"].numpy()[0]
        np.testing.assert_allclose(classifier.probabilities(text), expected, atol=TOLERANCE)


def test_lm_step_and_prime_match_the_savedmodel(lm_run, litert_lm):
    signatures = export.load_serving(lm_run).signatures
    lm = EdgeLanguageModel(EdgeExport.open(litert_lm))
    ids = lm.prompt_ids(PROMPTS[2])  # longer than prime's 8: primed in chunks
    states = lm.zero_states()
    for token in ids:
        outputs = signatures["step"](token_ids=tf.constant([token]), states=states)
        expected_logits, states = outputs["logits"].numpy(), outputs["states"].numpy()
    logits, primed = lm.prime(ids)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE)
    np.testing.assert_allclose(primed, states, atol=TOLERANCE)
    stepped, _ = lm.step(np.array([5, 6]), np.repeat(states, 2, axis=0))
    expected = signatures["step"](token_ids=tf.constant([5, 6]), states=np.repeat(states, 2, 0))
    np.testing.assert_allclose(stepped, expected["logits"].numpy(), atol=TOLERANCE)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_lm_generation_gives_the_savedmodel_ids(lm_run, litert_lm, temperature):
    generate = export.load_serving(lm_run).signatures["generate"]
    lm = EdgeLanguageModel(EdgeExport.open(litert_lm))
    options = SamplingOptions(max_tokens=30, temperature=temperature, top_k=5, top_p=0.9, seed=3)
    outputs = generate(
        prompt=tf.constant(PROMPTS),
        max_tokens=tf.constant(30),
        temperature=tf.constant(temperature),
        top_k=tf.constant(5),
        top_p=tf.constant(0.9),
        seed=tf.constant(3, tf.int64),
    )
    expected = [t.decode("utf-8") for t in outputs["text"].numpy()]
    assert [lm.generate(p, options, row=r) for r, p in enumerate(PROMPTS)] == expected


def test_lm_stream_pieces_join_to_generate(litert_lm, monkeypatch):
    # A window of 3 ids: the stream's window moves every few tokens of the 40.
    monkeypatch.setattr(stream_text, "DEFAULT_WINDOW", 3)
    lm = EdgeLanguageModel(EdgeExport.open(litert_lm))
    options = SamplingOptions(max_tokens=40, temperature=0.8, seed=4)
    for row, prompt in enumerate(PROMPTS):
        assert "".join(lm.stream(prompt, options, row=row)) == lm.generate(prompt, options, row)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translations_match_the_savedmodel(translation_run, litert_translation, beam_size):
    translate = export.load_serving(translation_run).inference.translate
    translator = EdgeTranslator(EdgeExport.open(litert_translation))
    decoding = translator.decoding
    outputs = translate(
        tf.constant(SOURCES),
        tf.constant(beam_size),
        tf.constant(0),
        tf.constant(decoding["length_penalty"], tf.float32),
        tf.constant(decoding["max_length_ratio"], tf.float32),
    )
    for row, source in enumerate(SOURCES):
        result = translator.translate(source, beam_size=beam_size)
        assert result.translation == outputs["translation"].numpy()[row].decode("utf-8")
        assert result.score == pytest.approx(float(outputs["score"].numpy()[row]), abs=TOLERANCE)
        assert result.capped == bool(outputs["capped"].numpy()[row])
        length = len(result.target_ids)
        np.testing.assert_allclose(
            result.attention,
            outputs["attention"].numpy()[row, :length, : result.attention.shape[1]],
            atol=TOLERANCE,
        )
