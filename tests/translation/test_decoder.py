"""The decoder: attention masking, and step-by-step decoding equal to teacher forcing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn import translation
from textrnn.layers.attention import make_attention

from .tiny import untrained


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_over_unmasked_and_zero_on_padding(kind):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(3, 4, 6)).astype("float32")
    value = rng.normal(size=(3, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    layer = make_attention(kind, units=8)
    context, weights = layer(query, value, value_mask=mask)
    weights = np.asarray(weights)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[0][:, 3:] == 0.0)
    assert np.all(weights[2] == 0.0)  # nothing to attend to: no weight anywhere
    step_context, step_weights = layer(query[:, 0], value, value_mask=mask)  # one decoding step
    np.testing.assert_allclose(np.asarray(step_weights), weights[:, 0], atol=1e-6)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize(
    "input_feeding, attention", [(True, "general"), (False, "additive"), (True, "dot")]
)
def test_step_by_step_decoding_matches_teacher_forcing(tmp_path, input_feeding, attention):
    extra = {"model.input_feeding": input_feeding, "model.attention": attention}
    if attention == "dot":
        extra["model.decoder.units"] = 32  # = 2 * encoder units
    config, (source_tokenizer, target_tokenizer), model = untrained(tmp_path, **extra)
    translator = translation.Translator(config, source_tokenizer, target_tokenizer, model)
    source = source_tokenizer.encode_padded(tf.constant(["the dog runs", "a cat"]), 8)
    target = target_tokenizer.encode_padded(tf.constant(["der Hund läuft", "eine Katze"]), 8)
    target_in = tf.concat([tf.fill([2, 1], 2), target], axis=1)  # [BOS] ...
    logits = model({"source_ids": source, "target_ids": target_in}, training=False).numpy()
    memory, mask, states = translator.encode(source)
    decoder = translator.decoder
    processed = decoder.process_memory(memory)
    state = {"states": states, "feed": decoder.initial_feed(memory)}
    for t in range(3):  # the first sentence's real steps
        log_probs, state, _ = decoder.step(target_in[:, t], state, memory, processed, mask)
        expected = tf.nn.log_softmax(logits[:, t]).numpy()
        np.testing.assert_allclose(log_probs.numpy()[0], expected[0], atol=1e-4)
