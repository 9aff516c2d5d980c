"""What a translation run exports and serves: two signatures over one `Translator`.

serving_default   source [batch] -> translation, score (the recipe's beam and penalties)
translate         source, beam_size, max_length, no_repeat_ngram, coverage_penalty ->
                  translation, score, n-best hypotheses and scores, attention, tokens,
                  lengths, capped

`no_repeat_ngram` and `coverage_penalty` came later than the other inputs: the manifest's
`input_defaults` holds the recipe's values, which the server fills in for requests that
leave them out (a request written for an older export still works).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.tasks import ServingParts
from textrnn.translation.config import TranslationConfig
from textrnn.translation.run import TranslationRun
from textrnn.translation.translator import Translator


def serving_signatures(run: TranslationRun) -> ServingParts:
    """Signatures, tracked resources, manifest and warm-up requests; `inference` is the
    `Translator` (in-process translation of run directories honours every setting)."""
    translator = Translator.from_run(run)
    return ServingParts(
        signatures=_signatures(translator),
        resources=[run.model, run.source_tokenizer, run.target_tokenizer, translator],
        manifest=_manifest(run),
        warmup_requests=_warmup_requests(run.config),
        inference=translator,
    )


def _signatures(translator: Translator) -> dict[str, Any]:
    """`serving_default` (source -> translation, score) and `translate` (+ beam_size,
    max_length, no_repeat_ngram, coverage_penalty); the length penalty and ratio are the
    recipe's, fixed at export time."""
    decoding = translator.config.decoding

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def serve(source: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = translator.translate(
            source,
            tf.constant(decoding.beam_size),
            tf.constant(0),
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
            tf.constant(decoding.no_repeat_ngram),
            tf.constant(decoding.coverage_penalty, tf.float32),
        )
        return {"translation": outputs["translation"], "score": outputs["score"]}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([], tf.int32, name="beam_size"),
            tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.int32, name="no_repeat_ngram"),
            tf.TensorSpec([], tf.float32, name="coverage_penalty"),
        ]
    )
    def translate(
        source: tf.Tensor,
        beam_size: tf.Tensor,
        max_length: tf.Tensor,
        no_repeat_ngram: tf.Tensor,
        coverage_penalty: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        return translator.translate(
            source,
            beam_size,
            max_length,
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
            no_repeat_ngram,
            coverage_penalty,
        )

    return {"serving_default": serve, "translate": translate}


def _manifest(run: TranslationRun) -> dict[str, Any]:
    """Settings clients need (`assets.extra/textrnn.json`): lengths, decoding, tokenizers."""
    config = run.config
    return {
        "source_max_length": config.data.source_max_length,
        "target_max_length": config.data.target_max_length,
        "decoding": {
            "beam_size": config.decoding.beam_size,
            "length_penalty": config.decoding.length_penalty,
            "max_length_ratio": config.decoding.max_length_ratio,
            "max_length_offset": config.decoding.max_length_offset,
            "no_repeat_ngram": config.decoding.no_repeat_ngram,
            "coverage_penalty": config.decoding.coverage_penalty,
        },
        # Values the server gives inputs a request leaves out (added after the first exports).
        "input_defaults": {"translate": translate_input_defaults(config)},
        "source_tokenizer": run.source_tokenizer.settings(),
        "target_tokenizer": run.target_tokenizer.settings(),
    }


def translate_input_defaults(config: TranslationConfig) -> dict[str, Any]:
    """The `translate` inputs that have defaults (the recipe's), as JSON numbers."""
    return {
        "no_repeat_ngram": int(config.decoding.no_repeat_ngram),
        "coverage_penalty": float(config.decoding.coverage_penalty),
    }


def _warmup_requests(config: TranslationConfig) -> list[tuple[str, dict[str, Any]]]:
    """One request per signature (a sentence and an empty one) for TensorFlow Serving."""
    source = np.array([b"A man is riding a bike.", b""], dtype=object)
    return [
        ("serving_default", {"source": source}),
        (
            "translate",
            {
                "source": source,
                "beam_size": np.int32(config.decoding.beam_size),
                "max_length": np.int32(0),
                "no_repeat_ngram": np.int32(config.decoding.no_repeat_ngram),
                "coverage_penalty": np.float32(config.decoding.coverage_penalty),
            },
        ),
    ]
