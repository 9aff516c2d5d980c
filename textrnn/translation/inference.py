"""Translating texts and scoring a run: the library behind `translate` and `evaluate`.

open_model        a run directory or an export, as an `export.Serving`
translate_texts   texts -> `Translation`s (batched, sorted by length), with `TranslationOptions`
evaluate          BLEU / chrF (sacreBLEU) of a run on aligned files, plus the loss, the
                  share of outputs cut at their length cap and the repeated n-gram rate
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn import export
from textrnn.decoding import search
from textrnn.decoding.options import check_decoding, flag_name
from textrnn.errors import ConfigError, DataError, UserError
from textrnn.fileio import atomic_write_text, check_output_file
from textrnn.translation.data import Pairs, encode_pairs
from textrnn.translation.model import MaskedSequenceLoss
from textrnn.translation.run import TranslationRun
from textrnn.translation.translator import Translator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranslationOptions:
    """How to translate; None takes the model's setting (the run's `[decoding]`).

    An export fixes `length_penalty` and `max_length_ratio` at export time; only a
    run directory honours other values. `no_repeat_ngram` and `coverage_penalty` are
    request-time inputs of exports made since they exist.
    """

    beam_size: int | None = None  # 1: greedy search
    n_best: int = 1  # hypotheses kept per sentence (<= beam_size)
    length_penalty: float | None = None  # GNMT alpha (0: none)
    max_length_ratio: float | None = None  # output tokens <= ratio * source tokens + offset
    max_length: int = 0  # cap on output tokens (0: from the ratio)
    no_repeat_ngram: int | None = None  # N > 0: no output repeats an N-gram of subwords
    coverage_penalty: float | None = None  # GNMT coverage penalty beta (0: none)
    batch_size: int = 64  # sentences per model call
    with_attention: bool = False  # fill each Translation's tokens and attention matrix


@dataclass
class Translation:
    source: str
    translation: str
    score: float
    hypotheses: list[tuple[str, float]]  # n-best (text, length-penalized score), best first
    capped: bool = False
    source_tokens: list[str] = field(default_factory=list)
    target_tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # (target tokens, source tokens)


def validate_decoding(
    beam_size: int,
    n_best: int = 1,
    length_penalty: float = 0.0,
    max_length_ratio: float = 1.0,
    max_length: int = 0,
    no_repeat_ngram: int = 0,
    coverage_penalty: float = 0.0,
) -> None:
    """Raise `ConfigError` naming the option when a decoding setting is out of range."""
    check_decoding(
        beam_size,
        length_penalty,
        max_length_ratio,
        flag_name,
        no_repeat_ngram,
        coverage_penalty,
    )
    if not 1 <= n_best <= beam_size:
        raise ConfigError(f"--n-best must be in [1, --beam-size {beam_size}], got {n_best}")
    if max_length < 0:
        raise ConfigError(
            f"--max-length must be >= 0 (0: from --max-length-ratio), got {max_length}"
        )


def open_model(path: str | os.PathLike) -> export.Serving:
    """`export.load_serving` for translation; a run directory's `inference` is its `Translator`."""
    return export.load_serving(path, expected_task="translation")


# ----------------------------------------------------------------------------- translate

TranslateCall = Callable[[tf.Tensor], dict[str, tf.Tensor]]


def translate_texts(
    serving: export.Serving,
    texts: list[str],
    options: TranslationOptions | None = None,
    warn: Callable[[str], Any] = logger.warning,
) -> list[Translation]:
    """Translate `texts` with a `textrnn.export.Serving` (run directory or export), batch by batch.

    Sentences are sorted by length inside the call so each batch pads little;
    results come back in input order. `warn` hears about sentences cut to the
    source length and outputs cut at their length cap.
    """
    if not texts:
        raise UserError("no input sentences: the request batch is empty")
    options = options or TranslationOptions()
    decoding = serving.manifest.get("decoding", {})
    beam_size = decoding.get("beam_size", 5) if options.beam_size is None else options.beam_size
    validate_decoding(
        beam_size,
        options.n_best,
        options.length_penalty or 0.0,
        options.max_length_ratio or 1.0,
        options.max_length,
        options.no_repeat_ngram or 0,
        options.coverage_penalty or 0.0,
    )
    if serving.source == "run":
        call = _run_call(serving.inference, beam_size, options, decoding)
    else:
        call = _export_call(serving, beam_size, options, decoding)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list[Translation | None] = [None] * len(texts)
    source_max = serving.manifest.get("source_max_length")
    for start in range(0, len(order), options.batch_size):
        indices = order[start : start + options.batch_size]
        outputs = call(tf.constant([texts[i] for i in indices], tf.string))
        outputs = {key: value.numpy() for key, value in outputs.items()}
        for row, index in enumerate(indices):
            item = _translation(outputs, row, texts[index], options)
            if source_max and len(_source_tokens(outputs, row)) >= source_max:
                warn(
                    f"sentence {index + 1}: longer than {source_max} source tokens; "
                    f"only the first {source_max} were translated"
                )
            if item.capped:
                warn(
                    f"sentence {index + 1}: output reached its length cap and was cut "
                    "(raise --max-length-ratio or --max-length)"
                )
            results[index] = item
    return results  # type: ignore[return-value]


def _run_call(
    translator: Translator, beam_size: int, options: TranslationOptions, decoding: dict
) -> TranslateCall:
    """A run directory's `Translator`: every setting is the caller's."""
    length_penalty = (
        decoding["length_penalty"] if options.length_penalty is None else options.length_penalty
    )
    max_length_ratio = (
        decoding["max_length_ratio"]
        if options.max_length_ratio is None
        else options.max_length_ratio
    )

    no_repeat_ngram, coverage_penalty = _repeat_and_coverage(options, decoding)

    def call(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        return translator.translate(
            batch,
            tf.constant(beam_size),
            tf.constant(options.max_length),
            tf.constant(length_penalty, tf.float32),
            tf.constant(max_length_ratio, tf.float32),
            tf.constant(no_repeat_ngram),
            tf.constant(coverage_penalty, tf.float32),
        )

    return call


def _export_call(
    serving: export.Serving, beam_size: int, options: TranslationOptions, decoding: dict
) -> TranslateCall:
    """An export's `translate` signature: its length penalty and ratio are fixed."""
    for name, value in (
        ("length_penalty", options.length_penalty),
        ("max_length_ratio", options.max_length_ratio),
    ):
        if value is not None and value != decoding.get(name):
            raise ConfigError(
                f"--{name.replace('_', '-')} needs a run directory: an export fixes it at "
                f"export time ({decoding.get(name)}); pass --model RUN_DIR"
            )
    function = serving.signatures["translate"]
    inputs = {
        "beam_size": tf.constant(beam_size),
        "max_length": tf.constant(options.max_length),
    }
    # A SavedModel's concrete function lists its inputs; a LiteRT export's host function
    # (`textrnn.edge`) takes neither option.
    specs = getattr(function, "structured_input_signature", None)
    accepted = specs[1] if specs else {}
    for name, value in zip(
        ("no_repeat_ngram", "coverage_penalty"),
        _repeat_and_coverage(options, decoding),
        strict=True,
    ):
        if name in accepted:
            inputs[name] = tf.constant(value, accepted[name].dtype)
        elif value:  # an export older than the option: it can only decode without it
            raise ConfigError(
                f"--{name.replace('_', '-')}: {serving.path}'s translate signature has no "
                f"{name} input (a LiteRT export, or a SavedModel exported before the option); "
                "pass --model RUN_DIR or export the run again"
            )

    def call(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        return function(source=batch, **inputs)

    return call


def _repeat_and_coverage(options: TranslationOptions, decoding: dict) -> tuple[int, float]:
    """(no_repeat_ngram, coverage_penalty): the options', else the model's (0 if it has none)."""
    no_repeat_ngram = (
        decoding.get("no_repeat_ngram", 0)
        if options.no_repeat_ngram is None
        else options.no_repeat_ngram
    )
    coverage_penalty = (
        decoding.get("coverage_penalty", 0.0)
        if options.coverage_penalty is None
        else options.coverage_penalty
    )
    return int(no_repeat_ngram), float(coverage_penalty)


def _source_tokens(outputs: dict[str, np.ndarray], row: int) -> list[str]:
    return [t.decode("utf-8") for t in outputs["source_tokens"][row] if t != b"[PAD]"]


def _translation(
    outputs: dict[str, np.ndarray], row: int, source: str, options: TranslationOptions
) -> Translation:
    """Row `row` of a batch's outputs as a `Translation` (n-best cut to `options.n_best`)."""
    hypotheses = [
        (text.decode("utf-8"), float(score))
        for text, score in zip(
            outputs["hypotheses"][row], outputs["hypothesis_scores"][row], strict=True
        )
        if score > search.NEGATIVE / 2  # unused beam slots when the search stopped early
    ][: options.n_best]
    item = Translation(
        source=source,
        translation=outputs["translation"][row].decode("utf-8"),
        score=float(outputs["score"][row]),
        hypotheses=hypotheses,
        capped=bool(outputs["capped"][row]),
    )
    if options.with_attention:
        source_tokens = _source_tokens(outputs, row)
        length = int(outputs["target_lengths"][row])
        item.source_tokens = source_tokens
        item.target_tokens = [t.decode("utf-8") for t in outputs["target_tokens"][row][:length]]
        item.attention = outputs["attention"][row][:length, : len(source_tokens)]
    return item


# ----------------------------------------------------------------------------- evaluate


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """sacreBLEU BLEU and chrF (default settings: 13a tokenization, cased) with their signatures."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(bleu_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_details": str(bleu_score),
    }


REPEAT_METRIC_ORDER = 3  # evaluate's repeated n-gram rate counts word 3-grams


def repeated_ngram_rate(texts: list[str], order: int = REPEAT_METRIC_ORDER) -> float:
    """Share of the word `order`-grams of `texts` (split on whitespace) that repeat an
    earlier one of the same text: 0 for outputs that never loop on a phrase."""
    grams = repeats = 0
    for text in texts:
        words = text.split()
        seen: set[tuple[str, ...]] = set()
        for start in range(len(words) - order + 1):
            gram = tuple(words[start : start + order])
            repeats += gram in seen
            seen.add(gram)
            grams += 1
    return repeats / grams if grams else 0.0


def validation_loss(run: TranslationRun, pairs: Pairs, batch_size: int = 64) -> float:
    """Mean per-token cross entropy (no label smoothing) of the references under teacher forcing."""
    config = run.config
    encoded = encode_pairs(run.source_tokenizer, run.target_tokenizer, pairs, config)
    longest = max(config.data.source_max_length, config.data.target_max_length)
    dataset = data_lib.batched_pairs(
        encoded.source_ids, encoded.target_ids, batch_size, longest, False, 0
    )
    loss = MaskedSequenceLoss(0.0)
    total = tokens = 0.0
    for inputs, targets in dataset:
        count = float(tf.math.count_nonzero(targets))
        total += float(loss.call(targets, run.model(inputs, training=False))) * count
        tokens += count
    return total / max(tokens, 1.0)


def evaluate(
    run_dir: str | os.PathLike,
    source: str,
    target: str,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    max_length_ratio: float | None = None,
    batch_size: int = 64,
    output: str | os.PathLike | None = None,
    encoding: str | None = None,
    no_repeat_ngram: int | None = None,
    coverage_penalty: float | None = None,
) -> dict[str, Any]:
    """BLEU and chrF of the detokenized translations against the raw references, plus the
    loss, the outputs cut at their length cap and the repeated word 3-gram rate (the
    references' rate beside it, for scale)."""
    if output:
        check_output_file(output, "--output")  # before decoding, not after
    serving = open_model(run_dir)
    if serving.source != "run":
        raise UserError(f"{run_dir} is an export; evaluate needs the run directory (--run-dir)")
    translator: Translator = serving.inference
    decoding = translator.config.decoding
    sources, targets, keep = _read_references(
        source, target, encoding or translator.config.data.encoding
    )
    beam = decoding.beam_size if beam_size is None else beam_size
    options = TranslationOptions(
        beam_size=beam,
        length_penalty=length_penalty,
        max_length_ratio=max_length_ratio,
        batch_size=batch_size,
        no_repeat_ngram=no_repeat_ngram,
        coverage_penalty=coverage_penalty,
    )
    started = time.perf_counter()
    results = translate_texts(
        serving, [sources[i].strip() for i in keep], options, warn=lambda message: None
    )
    seconds = time.perf_counter() - started
    hypotheses = [r.translation for r in results]
    references = [targets[i].strip() for i in keep]
    metrics = corpus_scores(hypotheses, references)
    pairs = Pairs([sources[i].strip() for i in keep], references)
    nll = validation_loss(translator.run, pairs, batch_size)
    if output:
        lines = [""] * len(sources)  # a skipped pair keeps its line, empty
        for index, hypothesis in zip(keep, hypotheses, strict=True):
            lines[index] = hypothesis
        atomic_write_text(output, "".join(line + "\n" for line in lines))
    metrics.update(
        {
            "loss": round(nll, 4),
            "perplexity": round(math.exp(min(nll, 50.0)), 2),
            "sentences": len(keep),
            "skipped_empty": len(sources) - len(keep),
            "capped": sum(r.capped for r in results),
            "capped_fraction": round(sum(r.capped for r in results) / len(results), 4),
            "repeated_ngram_rate": round(repeated_ngram_rate(hypotheses), 4),
            "reference_repeated_ngram_rate": round(repeated_ngram_rate(references), 4),
            "beam_size": beam,
            "length_penalty": decoding.length_penalty if length_penalty is None else length_penalty,
            "no_repeat_ngram": (
                decoding.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram
            ),
            "coverage_penalty": (
                decoding.coverage_penalty if coverage_penalty is None else coverage_penalty
            ),
            "decode_seconds": round(seconds, 1),
            "sentences_per_second": round(len(keep) / max(seconds, 1e-9), 1),
        }
    )
    return metrics


def _read_references(
    source: str, target: str, encoding: str
) -> tuple[list[str], list[str], list[int]]:
    """(sources, references, indices of the pairs with both sides non-empty)."""
    sources = data_lib.read_lines(source, encoding, "--source")
    targets = data_lib.read_lines(target, encoding, "--target")
    if len(sources) != len(targets):
        raise DataError(
            f"{source} has {len(sources)} lines but {target} has {len(targets)}; "
            "--source and --target must be aligned line by line"
        )
    keep = [
        i for i, (s, t) in enumerate(zip(sources, targets, strict=True)) if s.strip() and t.strip()
    ]
    if not keep:
        raise DataError(f"{source} / {target}: no non-empty sentence pairs")
    return sources, targets, keep
