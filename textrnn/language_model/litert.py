"""What a language model exports to LiteRT: `step` and `prime`, states explicit.

    step   token_ids int32 [batch], states float32 [batch, num_states, units]
           -> logits float32 [batch, vocabulary], states
    prime  token_ids int32 [1, prime_length] (right-padded with 0), states [1, ...]
           -> logits of the last real position [1, vocabulary], states

No state lives inside the interpreter: the same inputs give the same outputs,
and a client carries `states` from call to call. `prime` consumes a prompt (or
a chunk of a long one, chaining the states) in one call; `step` takes one token
per call. Both reuse the trained layers of `LanguageModel` (the cells directly
for `step`, the masked stack for `prime`), without XLA. The host runtime
(`textrnn.edge`) tokenizes, samples and detokenizes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from textrnn.errors import ConfigError
from textrnn.language_model.generation import LanguageModel
from textrnn.language_model.run import LanguageModelRun
from textrnn.tasks import LiteRTParts
from textrnn.tokenizers import EOS_ID, PAD_ID

DEFAULT_PRIME_LENGTH = 64


def litert_functions(run: LanguageModelRun, max_length: int | None = None) -> LiteRTParts:
    """`step` and `prime` (`max_length`: prime's fixed length, default 64 tokens)."""
    prime_length = max_length or DEFAULT_PRIME_LENGTH
    if prime_length < 1:
        raise ConfigError(f"--max-length must be at least 1, got {prime_length}")
    if run.config.model.stack.bidirectional:
        raise ConfigError("a bidirectional language model cannot step token by token")
    lm = LanguageModel.from_run(run, jit_compile=False)
    shape = [lm.num_states, lm.stack.units]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, *shape], tf.float32, name="states"),
        ],
        jit_compile=False,
    )
    def step(token_ids, states):
        logits, new_states = lm.step(token_ids, lm.unpack(states))
        return {"logits": logits, "states": lm.pack(new_states)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, prime_length], tf.int32, name="token_ids"),
            tf.TensorSpec([1, *shape], tf.float32, name="states"),
        ],
        jit_compile=False,
    )
    def prime(token_ids, states):
        logits, new_states = lm.run(token_ids, lm.unpack(states))  # (1, time, vocabulary)
        last = tf.maximum(tf.reduce_sum(tf.cast(token_ids != PAD_ID, tf.int32), axis=1) - 1, 0)
        return {
            "logits": tf.gather(logits, last, axis=1, batch_dims=1),
            "states": lm.pack(new_states),
        }

    return LiteRTParts(
        functions={"step": step, "prime": prime},
        resources=[run.model],
        tokenizers={"text": run.tokenizer},
        manifest={
            "layout": run.config.data.layout,
            "num_states": lm.num_states,
            "units": lm.stack.units,
            "prime_length": prime_length,
            "eos_id": EOS_ID,
            "banned_ids": [int(i) for i in np.flatnonzero(lm.banned.numpy())],
        },
    )
