"""The in-graph language model: scoring, one-step decoding and the sampling loop.

`LanguageModel` wires a trained (stateless) model's layers for inference.
Generation runs entirely in the graph: the prompt goes through the stack
once (`prime`), then a `tf.while_loop` takes one `RNNStack.step` per token,
carrying the states, sampling with `textrnn.decoding.sampling` and stateless
per-step seeds, so the same seed gives the same text in-process, under XLA,
in an export, and token by token through the `step` signature.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from textrnn.decoding import sampling
from textrnn.layers.rnn_stack import RNNStack
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

if TYPE_CHECKING:
    from textrnn.language_model.run import LanguageModelRun

# Most tokens a row takes in one `generate_rows` call: the loop's fixed buffer.
ROWS_CAPACITY = 64


class LanguageModel(tf.Module):
    """The trained layers, wired for inference: sequence scoring and one-step decoding.

    Args:
        model: a (stateless) model from `build_model`.
        tokenizer: its tokenizer.
        continuous: the corpus layout was `continuous` (no `[EOS]` to stop at).
    """

    def __init__(
        self, model: keras.Model, tokenizer: Tokenizer, continuous: bool, jit_compile: bool = True
    ):
        super().__init__(name="language_model")
        self.model = model
        self.tokenizer = tokenizer
        self.continuous = continuous
        self.embedding = model.get_layer("embedding")
        self.stack: RNNStack = model.get_layer("rnn_stack")
        self.projection = _maybe_layer(model, "projection")
        self.output_layer = _maybe_layer(model, "logits")
        self.vocabulary_size = tokenizer.vocabulary_size
        self.num_states = self.stack.states_per_layer * self.stack.num_layers
        # Never generated: padding, unknown (its text is a placeholder), start; [EOS] without lines.
        banned = [PAD_ID, UNK_ID, BOS_ID] + ([EOS_ID] if continuous else [])
        self.banned = tf.constant(np.isin(np.arange(self.vocabulary_size), banned))  # (vocab,) bool
        self._decode = tf.function(
            self._decode_loop, jit_compile=jit_compile, reduce_retracing=True
        )

    @classmethod
    def from_run(cls, run: LanguageModelRun, jit_compile: bool = True) -> LanguageModel:
        """The inference module of a loaded run (its layout decides whether `[EOS]` stops)."""
        return cls(run.model, run.tokenizer, run.config.data.layout == "continuous", jit_compile)

    # -- pieces ---------------------------------------------------------------------

    def logits(self, features: tf.Tensor) -> tf.Tensor:
        """Features `(..., units)` -> float32 logits `(..., vocabulary)`."""
        if self.output_layer is not None:
            return tf.cast(self.output_layer(features), tf.float32)
        if self.projection is not None:
            features = self.projection(features)
        return tf.cast(self.embedding(features, reverse=True), tf.float32)

    def zero_states(self, batch: tf.Tensor) -> list[tf.Tensor]:
        return [
            tf.zeros([batch, self.stack.units], self.stack.compute_dtype)
            for _ in range(self.num_states)
        ]

    def pack(self, states: list[tf.Tensor]) -> tf.Tensor:
        return tf.cast(tf.stack(states, axis=1), tf.float32)  # (batch, num_states, units)

    def unpack(self, states: tf.Tensor) -> list[tf.Tensor]:
        return [
            tf.cast(s, self.stack.compute_dtype)
            for s in tf.unstack(states, num=self.num_states, axis=1)
        ]

    def run(self, ids: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Ids `(batch, time)` (0 = padding, skipped) from `states`
        -> logits `(batch, time, vocabulary)`, final states."""
        x = self.embedding(ids)  # (batch, time, embedding_dim)
        mask = tf.not_equal(ids, PAD_ID)
        outputs = self.stack(x, mask=mask, initial_state=states, training=False)
        return self.logits(outputs[0]), list(outputs[1:])

    def step(
        self, token_ids: tf.Tensor, states: list[tf.Tensor]
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Token ids `(batch,)` -> next-token logits `(batch, vocabulary)`, new states."""
        x = tf.identity(self.embedding(token_ids))  # (batch, embedding_dim), no Keras mask
        output, states = self.stack.step(x, states)
        return self.logits(output), states

    # -- generation -----------------------------------------------------------------

    def prompt_ids(self, prompt: tf.Tensor) -> tf.Tensor:
        """Prompts `tf.string [batch]` -> `[BOS] tokens`, `int32 (batch, time)` right-padded."""
        ids = tf.cast(self.tokenizer.tokenize(prompt), tf.int32)
        bos = tf.fill([tf.shape(prompt)[0], 1], tf.constant(BOS_ID, tf.int32))
        return tf.concat([bos, ids], axis=1).to_tensor(default_value=PAD_ID)

    def prime(self, prompt: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Consume the prompts once: logits for the first new token `(batch, vocabulary)`,
        states."""
        ids = self.prompt_ids(prompt)  # (batch, time)
        batch = tf.shape(ids)[0]
        logits, states = self.run(ids, self.zero_states(batch))
        last = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1) - 1  # (batch,)
        return tf.gather(logits, last, axis=1, batch_dims=1), states

    def _decode_loop(
        self,
        logits,
        states,
        capacity,
        max_tokens,
        temperature,
        top_k,
        top_p,
        seed,
        start=0,
        first_row=0,
    ):
        """Sample and step up to `max_tokens` tokens from `logits` / `states`: ids
        `(batch, capacity)` (0 after `[EOS]` and past the count), the count, and the
        logits and states after each row's last token.

        Step t draws the noise of decoding step `start + t` for batch rows
        `first_row...`: `generate` runs it once from step 0, `generate_chunk` a few
        tokens at a time from where the previous chunk stopped, with the same draws.
        `generate_rows` gives everything per row (`[batch]`: streams at different
        steps, with their own knobs, seeds and token counts, in one loop); a row
        stops at its own count or `[EOS]`, its logits and states kept from there.
        """
        # XLA compiles once per (batch size, capacity): capacity is max_tokens rounded
        # up to a power of two, so a new max_tokens rarely means a new compilation.
        batch = tf.shape(logits)[0]
        tokens = tf.TensorArray(tf.int32, size=capacity, element_shape=[None])
        start = tf.cast(start, tf.int32)
        max_tokens = tf.cast(max_tokens, tf.int32)
        limit = tf.broadcast_to(max_tokens, [batch])  # per row

        def keep_going(t, logits, states, finished, tokens):
            return tf.logical_not(tf.reduce_all(finished))

        def body(t, logits, states, finished, tokens):
            token = sampling.sample_logits(
                logits,
                temperature,
                top_k,
                top_p,
                sampling.step_seed(seed, start + t),
                first_row=first_row,
                banned=self.banned,
            )  # (batch,)
            token = tf.where(finished, tf.constant(PAD_ID, tf.int32), token)
            tokens = tokens.write(t, token)
            new_logits, new_states = self.step(token, states)
            # A row that took a token moves on; a finished one keeps where it stopped.
            kept = finished[:, tf.newaxis]
            logits = tf.where(kept, logits, new_logits)
            states = [tf.where(kept, s, n) for s, n in zip(states, new_states, strict=True)]
            finished = finished | tf.equal(token, EOS_ID) | (t + 1 >= limit)
            return t + 1, logits, states, finished, tokens

        t0 = tf.constant(0, tf.int32)
        finished = limit <= 0
        t, logits, states, _, tokens = tf.while_loop(
            keep_going,
            body,
            (t0, logits, states, finished, tokens),
            maximum_iterations=tf.reduce_max(limit),
        )
        # Slots past t stay 0 (padding); the caller trims to t outside XLA.
        return tf.transpose(tokens.stack()), t, logits, states  # (batch, capacity), (), ...

    def generate_ids(self, prompt, max_tokens, temperature, top_k, top_p, seed) -> tf.Tensor:
        """Prompts `[batch]` -> generated ids `int32 (batch, tokens)`, 0 after `[EOS]`."""
        checks = sampling.assert_sampling_options(
            max_tokens, temperature, top_k, top_p, self.vocabulary_size
        )
        with tf.control_dependencies(checks):
            logits, states = self.prime(prompt)
        capacity = _capacity(max_tokens)
        tokens, t, _, _ = self._decode(
            logits, states, capacity, max_tokens, temperature, top_k, top_p, seed
        )
        return tokens[:, :t]

    def generate_chunk(
        self, logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
    ) -> dict[str, tf.Tensor]:
        """Continue one stream by `tokens` tokens from decoding step `start` (the
        `generate_chunk` signature): ids `(1, tokens)` (0 after `[EOS]`), the logits and
        packed states to continue from, and the text of `previous` + these ids (the
        whole continuation so far, so pieces split across chunks join as in `generate`).
        """
        ids, logits, new_states, text = self._continue(
            logits,
            states,
            _capacity(tokens),
            tokens,
            (temperature, top_k, top_p, seed),
            start,
            row,
            previous,
            sampling.MAX_TOKENS_CAP,
        )
        return {"token_ids": ids, "logits": logits, "states": new_states, "text": text}

    def generate_rows(
        self, logits, states, start, tokens, temperature, top_k, top_p, seed, row, previous
    ) -> dict[str, tf.Tensor]:
        """Continue a batch of streams (the `generate_rows` signature), everything per row
        (`[batch]`): row i takes up to `tokens[i]` (<= `ROWS_CAPACITY`) tokens from its
        decoding step `start[i]`, with its own knobs, seed and batch row `row[i]` (the
        noise it draws in `generate`). `tokens[i] == 0` is a padding row. Ids
        `(batch, <= ROWS_CAPACITY)` (0 after `[EOS]` and past the row's count), the
        count of each row, the logits and packed states to continue from, and the text of
        each row's `previous` (its ids so far, right-padded with 0) + its new ids.
        """
        # A fixed capacity: XLA compiles once per batch size, whatever the counts.
        ids, logits, new_states, text = self._continue(
            logits,
            states,
            ROWS_CAPACITY,
            tokens,
            (temperature, top_k, top_p, seed),
            start,
            row,
            previous,
            ROWS_CAPACITY,
        )
        return {
            "token_ids": ids,
            "num_tokens": tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1),
            "logits": logits,
            "states": new_states,
            "text": text,
        }

    def _continue(
        self, logits, states, capacity, tokens, knobs, start, row, previous, max_tokens_cap
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """`generate_chunk`'s and `generate_rows`'s work: check the knobs (temperature,
        top_k, top_p, seed), decode up to `tokens` more ids into a buffer of `capacity`
        from the given logits and packed states, and detokenize `previous` + the new ids.
        Returns the new ids, the logits and packed states to continue from, and the text."""
        temperature, top_k, top_p, seed = knobs
        checks = sampling.assert_sampling_options(
            tokens, temperature, top_k, top_p, self.vocabulary_size, max_tokens_cap
        )
        with tf.control_dependencies(checks):
            tokens = tf.identity(tokens)
        ids, t, logits, new_states = self._decode(
            logits,
            self.unpack(states),
            capacity,
            tokens,
            temperature,
            top_k,
            top_p,
            seed,
            start,
            row,
        )
        ids = ids[:, :t]
        text = self.tokenizer.detokenize(tf.concat([previous, ids], axis=1))
        return ids, logits, self.pack(new_states), text

    def generate(self, prompt, max_tokens, temperature, top_k, top_p, seed) -> dict[str, tf.Tensor]:
        ids = self.generate_ids(prompt, max_tokens, temperature, top_k, top_p, seed)
        lengths = tf.reduce_sum(
            tf.cast(tf.logical_and(ids != PAD_ID, ids != EOS_ID), tf.int32), axis=1
        )
        return {"text": self.tokenizer.detokenize(ids), "num_tokens": lengths}

    # -- scoring --------------------------------------------------------------------

    def score(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per line: log-likelihood (nats), perplexity and the number of tokens predicted."""
        ids = tf.cast(self.tokenizer.tokenize(text), tf.int32)
        batch = tf.shape(text)[0]
        bos = tf.fill([batch, 1], tf.constant(BOS_ID, tf.int32))
        inputs = tf.concat([bos, ids], axis=1)
        targets = ids
        if not self.continuous:
            targets = tf.concat([ids, tf.fill([batch, 1], tf.constant(EOS_ID, tf.int32))], axis=1)
        else:
            inputs = inputs[:, :-1]
        inputs = inputs.to_tensor(default_value=PAD_ID)  # (batch, time)
        targets = targets.to_tensor(default_value=PAD_ID, shape=tf.shape(inputs))
        logits, _ = self.run(inputs, self.zero_states(batch))  # (batch, time, vocabulary)
        weights = tf.cast(targets != PAD_ID, tf.float32)
        nll = (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits) * weights
        )
        log_likelihood = -tf.reduce_sum(nll, axis=1)
        count = tf.reduce_sum(weights, axis=1)
        return {
            "log_likelihood": log_likelihood,
            "perplexity": tf.exp(tf.math.divide_no_nan(-log_likelihood, count)),
            "num_tokens": tf.cast(count, tf.int32),
        }

    def chunk_loss(self, inputs: tf.Tensor, targets: tf.Tensor, states: list[tf.Tensor]):
        """Summed nats and token count of one `(batch, time)` chunk, carrying `states`."""
        logits, states = self.run(inputs, states)
        weights = tf.cast(targets != PAD_ID, tf.float32)
        nll = (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits) * weights
        )
        return tf.reduce_sum(nll), tf.reduce_sum(weights), states


def _capacity(max_tokens: tf.Tensor) -> tf.Tensor:
    """`max_tokens` rounded up to a power of two: the loop's buffer, so XLA compiles once
    per power of two rather than once per `max_tokens`."""
    capacity = tf.cast(
        tf.pow(
            2.0,
            tf.math.ceil(
                tf.math.log(tf.cast(tf.maximum(max_tokens, 1), tf.float32)) / math.log(2.0)
            ),
        ),
        tf.int32,
    )
    return tf.maximum(capacity, max_tokens)  # guard against float rounding


def _maybe_layer(model: keras.Model, name: str) -> keras.layers.Layer | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None
