"""The decoder: step-by-step decoding equal to teacher forcing (attention: tests/layers)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from textrnn import translation

from .tiny import untrained


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
