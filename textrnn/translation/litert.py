"""What a translation run exports to LiteRT: `encode` and `decode_step`.

    encode       source_ids int32 [1, source_length] (right-padded with 0)
                 -> memory [1, S, M], keys [1, S, K] (attention's per-sentence
                    projection of the memory), mask float32 [1, S] (1 real, 0 padding),
                    states [1, num_states, units] (the bridge's), feed [1, feed_dim] (zeros)
    decode_step  token_ids int32 [n], states [n, ...], feed [n, feed_dim],
                 memory [n, S, M], keys [n, S, K], mask [n, S]
                 -> log_probs float32 [n, vocabulary], states, feed, attention [n, S]

`n` is the number of hypotheses (1 for greedy search, the beam size for beam
search; the host tiles the encoder outputs). Both use the trained layers through
`Translator.encode` and `AttentionDecoder.step`, the functions the in-graph search
calls, without XLA. Greedy and beam search run on the host (`textrnn.edge`).
"""

from __future__ import annotations

import tensorflow as tf

from textrnn.errors import ConfigError
from textrnn.tasks import LiteRTParts
from textrnn.tokenizers import BOS_ID, EOS_ID
from textrnn.translation.run import TranslationRun
from textrnn.translation.translator import Translator


def litert_functions(run: TranslationRun, max_length: int | None = None) -> LiteRTParts:
    """`encode` and `decode_step` (`max_length`: source tokens, default the run's)."""
    source_length = max_length or run.config.data.source_max_length
    if source_length < 1:
        raise ConfigError(f"--max-length must be at least 1, got {source_length}")
    translator = Translator.from_run(run)
    decoder = translator.decoder
    units, num_states = decoder.units, decoder.stack.states_per_layer * decoder.num_layers
    memory_features = translator.encoder.output_features
    keys_features = _keys_features(translator, memory_features)

    def pack(states):
        return tf.stack(states, axis=1)  # (n, num_states, units)

    @tf.function(
        input_signature=[tf.TensorSpec([1, source_length], tf.int32, name="source_ids")],
        jit_compile=False,
    )
    def encode(source_ids):
        memory, mask, initial = translator.encode(source_ids)
        return {
            "memory": memory,
            "keys": decoder.process_memory(memory),
            "mask": tf.cast(mask, tf.float32),
            "states": pack(initial),
            "feed": decoder.initial_feed(memory),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, num_states, units], tf.float32, name="states"),
            tf.TensorSpec([None, decoder.feed_dim], tf.float32, name="feed"),
            tf.TensorSpec([None, source_length, memory_features], tf.float32, name="memory"),
            tf.TensorSpec([None, source_length, keys_features], tf.float32, name="keys"),
            tf.TensorSpec([None, source_length], tf.float32, name="mask"),
        ],
        jit_compile=False,
    )
    def decode_step(token_ids, states, feed, memory, keys, mask):
        state = {"states": tf.unstack(states, num=num_states, axis=1), "feed": feed}
        log_probs, state, attention = decoder.step(token_ids, state, memory, keys, mask > 0.5)
        return {
            "log_probs": tf.cast(log_probs, tf.float32),
            "states": pack(state["states"]),
            "feed": state["feed"],
            "attention": tf.cast(attention, tf.float32),
        }

    config = run.config
    return LiteRTParts(
        functions={"encode": encode, "decode_step": decode_step},
        resources=[run.model],
        tokenizers={"source": run.source_tokenizer, "target": run.target_tokenizer},
        manifest={
            "source_max_length": source_length,
            "target_max_length": config.data.target_max_length,
            "num_states": num_states,
            "units": units,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "decoding": {
                "beam_size": config.decoding.beam_size,
                "length_penalty": config.decoding.length_penalty,
                "max_length_ratio": config.decoding.max_length_ratio,
                "max_length_offset": config.decoding.max_length_offset,
            },
        },
    )


def _keys_features(translator: Translator, memory_features: int) -> int:
    """Width of the attention's processed memory (the memory itself unless projected)."""
    probe = tf.zeros([1, 1, memory_features])
    return int(translator.decoder.process_memory(probe).shape[-1])
