"""Decoding options and their bounds, without TensorFlow.

One home for what the in-graph decoders (`textrnn.decoding.sampling`,
`textrnn.translation`), the CLI, the server and the LiteRT host runtime
(`textrnn.edge`, which must not import TensorFlow) all check: the same knob
out of range gets the same one-line `ConfigError` everywhere. The exported
graphs assert the same bounds on served requests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from textrnn.errors import ConfigError

# Largest max_tokens a request may ask for: the output buffer is sized from it.
MAX_TOKENS_CAP = 10000
# Largest translation beam: a request's beam_size is checked against it in the exported graph,
# since a huge beam would hold a server's memory and cores for minutes.
MAX_BEAM_SIZE = 64
# Bounds of the repeat and coverage options, checked the same way (recipe, flags, requests).
MAX_NO_REPEAT_NGRAM = 16  # longer n-grams hardly ever repeat within one sentence
MAX_COVERAGE_PENALTY = 10.0  # GNMT tuned beta in [0, 1]; far beyond, it swamps log P


def validate_sampling_options(
    max_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    vocabulary_size: int,
    max_tokens_cap: int = MAX_TOKENS_CAP,
) -> None:
    """Raise `ConfigError` naming the option when a sampling knob is out of range."""
    if not 0 <= max_tokens <= max_tokens_cap:
        raise ConfigError(f"--max-tokens must be in [0, {max_tokens_cap}], got {max_tokens}")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(
            f"--temperature must be a finite number >= 0 (0 is greedy), got {temperature}"
        )
    if not 0 <= top_k <= vocabulary_size:
        raise ConfigError(
            f"--top-k must be in [0, {vocabulary_size}] (the vocabulary size; 0 is off), "
            f"got {top_k}"
        )
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"--top-p must be in (0, 1] (1 is off), got {top_p}")


@dataclass(frozen=True)
class SamplingOptions:
    """Request-time knobs of text generation (see `textrnn.decoding.sampling` for their
    meaning): max_tokens, temperature (0: greedy), top_k (0: off), top_p (1: off), seed."""

    max_tokens: int = 200
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None  # None: a random seed

    def resolved_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        return int.from_bytes(os.urandom(4), "little")

    def check(self, vocabulary_size: int, max_tokens_cap: int = MAX_TOKENS_CAP) -> None:
        """Raise `ConfigError` naming the option out of range for this model."""
        validate_sampling_options(
            self.max_tokens,
            self.temperature,
            self.top_k,
            self.top_p,
            vocabulary_size,
            max_tokens_cap,
        )


def check_decoding(
    beam_size: int,
    length_penalty: float,
    max_length_ratio: float,
    name: Callable[[str], str],
    no_repeat_ngram: int = 0,
    coverage_penalty: float = 0.0,
) -> None:
    """Raise `ConfigError` if a translation decoding setting is out of range; `name(key)`
    names it (a recipe key such as "decoding.beam_size", or a flag such as "--beam-size")."""
    if not 1 <= beam_size <= MAX_BEAM_SIZE:
        raise ConfigError(
            f"{name('beam_size')} must be in [1, {MAX_BEAM_SIZE}] (1 is greedy), got {beam_size}"
        )
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise ConfigError(
            f"{name('length_penalty')} must be a finite number >= 0, got {length_penalty}"
        )
    if not (math.isfinite(max_length_ratio) and max_length_ratio > 0):
        raise ConfigError(
            f"{name('max_length_ratio')} must be a finite number > 0, got {max_length_ratio}"
        )
    if not 0 <= no_repeat_ngram <= MAX_NO_REPEAT_NGRAM:
        raise ConfigError(
            f"{name('no_repeat_ngram')} must be in [0, {MAX_NO_REPEAT_NGRAM}] (0: off), "
            f"got {no_repeat_ngram}"
        )
    if not (math.isfinite(coverage_penalty) and 0 <= coverage_penalty <= MAX_COVERAGE_PENALTY):
        raise ConfigError(
            f"{name('coverage_penalty')} must be a finite number in [0, {MAX_COVERAGE_PENALTY:g}]"
            f" (0: off), got {coverage_penalty}"
        )


def flag_name(key: str) -> str:
    """The CLI flag of a decoding key: "beam_size" -> "--beam-size"."""
    return "--" + key.replace("_", "-")
