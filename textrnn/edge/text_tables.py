"""The host tokenizer's tables, computed with the very TensorFlow ops the graph runs.

`host_tokenizer_settings(tokenizer)` returns the tokenizer's settings plus
`host_tables`: every Unicode code point is run through the in-graph ops one by one
(normalization, `case_fold_utf8`, the RE2 split classes, `tf.strings.split`'s
whitespace), and the tables keep what `textrnn.edge.text.HostTokenizer` needs to
give the same ids: ranges for the character classes and the characters where
Python's `unicodedata` disagrees with ICU. A setting the host cannot reproduce
raises `ConfigError` (export-litert stops before writing anything).

Imports TensorFlow: export time only.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from textrnn.edge.text import casefold_baseline
from textrnn.errors import ConfigError
from textrnn.tokenizers import _SEPARATE, Tokenizer

KNOWN = {
    "kind": ("word", "subword", "char"),
    "normalization": ("NFKC", "NFC", "NFKD", "NFD", ""),
    "split": ("script", "whitespace"),
    "lowercase": (True, False),
}


def check_host_support(settings: dict[str, Any]) -> None:
    """Raise `ConfigError` naming a tokenizer setting the host runtime cannot reproduce."""
    for key, allowed in KNOWN.items():
        if settings.get(key) not in allowed:
            raise ConfigError(
                f"tokenizer.{key} = {settings.get(key)!r} has no host implementation in "
                f"textrnn.edge (supported: {', '.join(map(repr, allowed))}); "
                "cannot export to LiteRT"
            )
    known = set(KNOWN) | {"unknown_aliases", "vocabulary_size", "host_tables"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"tokenizer setting(s) {', '.join(unknown)} have no host implementation in "
            "textrnn.edge; cannot export to LiteRT"
        )


@functools.lru_cache(maxsize=1)
def _code_points() -> tuple[np.ndarray, tf.Tensor]:
    """Every Unicode scalar value, and the same as a tensor of one-character strings."""
    points = np.array([p for p in range(0x110000) if not 0xD800 <= p <= 0xDFFF], np.int32)
    strings = tf.strings.unicode_encode(tf.reshape(points, [-1, 1]), "UTF-8")
    return points, strings


def _ranges(points: np.ndarray) -> list[list[int]]:
    """Sorted code points -> inclusive [first, last] ranges."""
    if not len(points):
        return []
    breaks = np.flatnonzero(np.diff(points) != 1)
    starts = np.concatenate([[points[0]], points[breaks + 1]])
    ends = np.concatenate([points[breaks], [points[-1]]])
    return [[int(a), int(b)] for a, b in zip(starts, ends, strict=True)]


def _differences(points: np.ndarray, graph: np.ndarray, python) -> dict[str, str]:
    table = {}
    for point, value in zip(points, graph, strict=True):
        text = value.decode("utf-8")
        if text != python(chr(point)):
            table[f"{point:X}"] = text
    return table


@functools.lru_cache(maxsize=8)
def _normalize_table(form: str) -> dict[str, str]:
    points, strings = _code_points()
    graph = tf_text.normalize_utf8(strings, form).numpy()
    return _differences(points, graph, lambda c: unicodedata.normalize(form, c))


@functools.lru_cache(maxsize=1)
def _casefold_table() -> dict[str, str]:
    points, strings = _code_points()
    graph = tf_text.case_fold_utf8(strings).numpy()
    return _differences(points, graph, casefold_baseline)


@functools.lru_cache(maxsize=2)
def _class_ranges(split: str) -> tuple[list[list[int]], list[list[int]]]:
    """(whitespace, separate) code-point ranges as the graph's split sees them."""
    points, strings = _code_points()
    if split == "whitespace":
        # tf.strings.split(x) with no separator: which characters split "a?b" in two.
        pairs = tf.strings.join(["a", strings, "b"])
        whitespace = tf.strings.split(pairs).row_lengths().numpy() != 1
        return _ranges(points[whitespace]), []
    whitespace = tf.strings.regex_full_match(strings, r"\s").numpy()
    separate = tf.strings.regex_full_match(strings, _SEPARATE).numpy()
    return _ranges(points[whitespace]), _ranges(points[separate & ~whitespace])


def host_tokenizer_settings(tokenizer: Tokenizer) -> dict[str, Any]:
    """The tokenizer's settings plus the tables `HostTokenizer` reads."""
    settings = tokenizer.settings()
    check_host_support(settings)
    tables: dict[str, Any] = {}
    if settings["normalization"]:
        tables["normalize"] = _normalize_table(settings["normalization"])
    if settings["lowercase"]:
        tables["casefold"] = _casefold_table()
    if settings["kind"] != "char":
        whitespace, separate = _class_ranges(settings["split"])
        tables["whitespace"], tables["separate"] = whitespace, separate
    return {**settings, "host_tables": tables}
