"""In-graph translation of raw strings: tokenize, encode, search, detokenize.

`Translator.translate` is the one `tf.function` behind every way of
translating: the CLI and `evaluate` call it in-process on a run directory, and
the export's `serving_default` / `translate` signatures wrap it
(`textrnn.translation.serving`), so an export answers exactly as its run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from textrnn.decoding import search
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from textrnn.translation.config import (
    MAX_BEAM_SIZE,
    MAX_COVERAGE_PENALTY,
    MAX_NO_REPEAT_NGRAM,
    TranslationConfig,
)

if TYPE_CHECKING:
    from textrnn.translation.run import TranslationRun


def detokenize_punctuation(texts: tf.Tensor) -> tf.Tensor:
    """Undo the word split's spaces around punctuation.

    "a , b ( c ) T - Shirt ." -> "a, b (c) T-Shirt.".
    """
    texts = tf.strings.regex_replace(texts, r" ([.,!?;:%)\]}])", r"\1")
    texts = tf.strings.regex_replace(texts, r"([(\[{]) ", r"\1")
    return tf.strings.regex_replace(texts, r"(\pL) - (\pL)", r"\1-\2")


class Translator(tf.Module):
    """In-graph translation of raw strings with a trained model.

    `translate(source, beam_size, max_length, length_penalty, max_length_ratio,
    no_repeat_ngram=0, coverage_penalty=0.0)` is one `tf.function` for every setting
    (beam size 1 runs `greedy_search`; `textrnn.decoding.penalties` describes the last
    two, off at 0). Output length per sentence: min(ceil(ratio * source tokens) + offset,
    max_length if > 0); a sentence reaching it ends with a forced [EOS]
    (`capped` is True). Out-of-range settings fail in the graph (InvalidArgumentError:
    a served request's 400).

    Args:
        config: the run's config (`data.source_max_length`, `decoding.max_length_offset`).
        source_tokenizer, target_tokenizer: the run's tokenizers.
        model: the teacher-forcing model of `build_model`, whose layers it reuses.

    Example:

        translator = Translator.from_run(load_run("runs/translation"))
        translator.translate(tf.constant(["A man."]), 4, 0, 0.6, 1.5)["translation"]
    """

    def __init__(
        self,
        config: TranslationConfig,
        source_tokenizer: Tokenizer,
        target_tokenizer: Tokenizer,
        model: keras.Model,
    ):
        super().__init__(name="translator")
        # The attributes below are tracked objects of exported SavedModels: keep their names.
        self.config = config
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.model = model
        self.source_embedding = model.get_layer("source_embedding")
        self.encoder = model.get_layer("encoder")
        self.bridge = model.get_layer("bridge")
        self.decoder = model.get_layer("decoder")
        self.translate = tf.function(
            self._translate,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="source"),
                tf.TensorSpec([], tf.int32, name="beam_size"),
                tf.TensorSpec([], tf.int32, name="max_length"),
                tf.TensorSpec([], tf.float32, name="length_penalty"),
                tf.TensorSpec([], tf.float32, name="max_length_ratio"),
                tf.TensorSpec([], tf.int32, name="no_repeat_ngram"),
                tf.TensorSpec([], tf.float32, name="coverage_penalty"),
            ],
        )

    @classmethod
    def from_run(cls, run: TranslationRun) -> Translator:
        return cls(run.config, run.source_tokenizer, run.target_tokenizer, run.model)

    @property
    def run(self) -> TranslationRun:
        """The run it translates with (built on demand: a property adds nothing to track)."""
        from textrnn.translation.run import TranslationRun

        return TranslationRun(self.config, self.source_tokenizer, self.target_tokenizer, self.model)

    def encode(self, source_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """ids (batch, source_time) -> memory, source mask, decoder initial states."""
        mask = tf.not_equal(source_ids, PAD_ID)  # (batch, source_time)
        embedded = self.source_embedding(source_ids)  # (batch, source_time, embedding_dim)
        encoded = self.encoder(embedded, mask=mask, training=False)
        memory, states = encoded[0], encoded[1:]  # (batch, source_time, memory_features)
        return memory, mask, self.bridge(list(states))

    def _translate(
        self,
        source,
        beam_size,
        max_length,
        length_penalty,
        max_length_ratio,
        no_repeat_ngram=0,
        coverage_penalty=0.0,
    ):
        check_request(beam_size, no_repeat_ngram, coverage_penalty)
        source_ids = self.source_tokenizer.encode_padded(source, self.config.data.source_max_length)
        limits = self._length_limits(source_ids, max_length, max_length_ratio)  # (batch,)
        memory, mask, initial = self.encode(source_ids)
        options = {
            "length_penalty": length_penalty,
            "no_repeat_ngram": no_repeat_ngram,
            "coverage_penalty": coverage_penalty,
            "memory_mask": mask,
        }
        result = tf.cond(
            tf.equal(beam_size, 1),
            lambda: self._search_greedy(memory, mask, initial, limits, options),
            lambda: self._search_beam(memory, mask, initial, limits, beam_size, options),
        )
        return self._outputs(result, source_ids, limits)

    def _length_limits(self, source_ids, max_length, max_length_ratio):
        """Per sentence: min(ceil(ratio * source tokens) + offset, max_length if > 0)."""
        source_lengths = tf.math.count_nonzero(source_ids, axis=1, dtype=tf.int32)  # (batch,)
        limits = tf.cast(
            tf.math.ceil(max_length_ratio * tf.cast(source_lengths, tf.float32)), tf.int32
        )
        limits = limits + self.config.decoding.max_length_offset
        return tf.where(max_length > 0, tf.minimum(limits, max_length), limits)  # (batch,)

    def _search_greedy(self, memory, mask, initial, limits, options):
        """`greedy_search`, shaped as a beam search's result with one hypothesis."""
        processed = self.decoder.process_memory(memory)

        def step(ids, state):
            return self.decoder.step(ids, state, memory, processed, mask)

        state = {"states": initial, "feed": self.decoder.initial_feed(memory)}
        result = search.greedy_search(
            step, state, limits, BOS_ID, EOS_ID, tf.shape(memory)[1], **options
        )
        return {key: value[:, tf.newaxis] for key, value in result.items()}

    def _search_beam(self, memory, mask, initial, limits, beam_size, options):
        tiled_memory = search.tile_beams(memory, beam_size)
        tiled_mask = search.tile_beams(mask, beam_size)
        processed = self.decoder.process_memory(tiled_memory)

        def step(ids, state):
            return self.decoder.step(ids, state, tiled_memory, processed, tiled_mask)

        state = {"states": initial, "feed": self.decoder.initial_feed(memory)}
        return search.beam_search(
            step, state, limits, beam_size, BOS_ID, EOS_ID, tf.shape(memory)[1], **options
        )

    def _outputs(self, result, source_ids, limits) -> dict[str, tf.Tensor]:
        """The search result `(batch, k, time)` as the signatures' named outputs."""
        ids = result["ids"]  # (batch, k, time)
        batch, k = tf.shape(ids)[0], tf.shape(ids)[1]
        texts = self.target_tokenizer.detokenize(tf.reshape(ids, [batch * k, -1]))
        hypotheses = tf.reshape(detokenize_punctuation(texts), [batch, k])
        best_ids = ids[:, 0]  # (batch, time)
        best_lengths = result["lengths"][:, 0]
        return {
            "translation": hypotheses[:, 0],
            "score": result["score"][:, 0],
            "hypotheses": hypotheses,
            "hypothesis_scores": result["score"],
            "attention": result["attention"][:, 0],  # (batch, time, source_time)
            "source_tokens": self.source_tokenizer.id_to_token(source_ids),  # (batch, source_time)
            "target_tokens": self.target_tokenizer.id_to_token(best_ids),  # (batch, time)
            "target_lengths": best_lengths,
            "capped": tf.greater_equal(best_lengths, limits),  # (batch,) the output hit its cap
        }


def check_request(beam_size, no_repeat_ngram, coverage_penalty) -> None:
    """In-graph bounds of the settings a served request chooses (the same as the recipe's:
    `config.check_decoding`). A huge beam would hold a server's memory and cores for
    minutes; a non-finite penalty would make every score NaN."""
    tf.debugging.assert_positive(beam_size, message="beam_size must be >= 1")
    tf.debugging.assert_less_equal(
        beam_size, MAX_BEAM_SIZE, message=f"beam_size must be <= {MAX_BEAM_SIZE}"
    )
    tf.debugging.assert_non_negative(no_repeat_ngram, message="no_repeat_ngram must be >= 0")
    tf.debugging.assert_less_equal(
        no_repeat_ngram,
        MAX_NO_REPEAT_NGRAM,
        message=f"no_repeat_ngram must be <= {MAX_NO_REPEAT_NGRAM}",
    )
    coverage_penalty = tf.convert_to_tensor(coverage_penalty, tf.float32)
    in_range = tf.logical_and(
        tf.math.is_finite(coverage_penalty),
        tf.logical_and(coverage_penalty >= 0.0, coverage_penalty <= MAX_COVERAGE_PENALTY),
    )
    tf.debugging.Assert(
        in_range,
        [
            f"coverage_penalty must be a finite number in [0, {MAX_COVERAGE_PENALTY:g}], got",
            coverage_penalty,
        ],
    )
