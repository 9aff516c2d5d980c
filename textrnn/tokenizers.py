"""Tokenizers that run inside the TensorFlow graph.

One `Tokenizer` class covers three kinds, all built on tensorflow-text and
`tf.strings` so the same ops run in the `tf.data` pipeline, in training and in
exported SavedModels (no Python at serving time):

- `word`: Unicode normalization, optional case folding, split on whitespace
  and around every punctuation / symbol / CJK character (`split="script"`) or
  on whitespace only (`split="whitespace"`, for pre-tokenized corpora).
- `subword`: the same word split, then WordPiece pieces from
  `tensorflow_text.FastWordpieceTokenizer`, with a vocabulary learned from the
  training corpus by Hugging Face `tokenizers`' WordPiece trainer
  (`textrnn.wordpiece`).
- `char`: Unicode code points (invalid UTF-8 becomes U+FFFD).

Ids 0-3 are reserved: `[PAD]` (padding, masked), `[UNK]`, `[BOS]`, `[EOS]`.
The vocabulary lives in `vocab.txt` (one token per line, backslash-escaped so
that newline characters survive) and the settings in `tokenizer.json`; the
word and char lookup tables read `vocab.txt` through a
`tf.lookup.TextFileInitializer`, so a SavedModel carries it as an asset.

Example:

```python
tokenizer = build_tokenizer(TokenizerConfig(kind="word"), ["a good film"], "runs/x")
ids = tokenizer.tokenize(tf.constant(["A good film!"]))  # RaggedTensor int64
tokenizer.detokenize(ids)  # [b"a good film !"]
```
"""

from __future__ import annotations

import collections
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from textrnn.config import TokenizerConfig
from textrnn.errors import RunDirError
from textrnn.fileio import atomic_write_text, escape_token, unescape_token
from textrnn.wordpiece import learn_wordpiece

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
RESERVED_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

VOCABULARY_FILE = "vocab.txt"
SETTINGS_FILE = "tokenizer.json"

# Split around punctuation, symbols and CJK characters, which carry no spaces.
_SEPARATE = r"[\p{P}\p{S}\p{Han}\p{Hiragana}\p{Katakana}]"
_DELIMITER = r"\s+|" + _SEPARATE
# Texts longer than this many bytes per allowed token are cut before
# tokenizing: a 1 GB line costs no more than a long sentence.
BYTES_PER_TOKEN_CAP = 64
# Which tokens of a text longer than max_length are kept (`keep_ends`).
TRUNCATIONS = ("head", "tail", "head+tail")


def _escape_in_graph(tokens: tf.Tensor) -> tf.Tensor:
    tokens = tf.strings.regex_replace(tokens, r"\\", r"\\\\")
    tokens = tf.strings.regex_replace(tokens, "\n", r"\\n")
    return tf.strings.regex_replace(tokens, "\r", r"\\r")


class Tokenizer(tf.Module):
    """An in-graph tokenizer with a fixed vocabulary.

    Args:
        kind: "word", "subword" or "char".
        vocabulary: the tokens, reserved ones first (ids are positions).
        vocabulary_file: path of `vocab.txt` holding the same tokens, escaped;
            the lookup table is initialized from it (and exported as an asset).
        lowercase: case-fold text before splitting.
        normalization: Unicode normalization form, or "" for none.
        split: "script" or "whitespace" word boundaries.
        unknown_aliases: corpus tokens mapped to `[UNK]` (e.g. "<unk>").
    """

    def __init__(
        self,
        kind: str,
        vocabulary: Sequence[str],
        vocabulary_file: str | os.PathLike,
        lowercase: bool = True,
        normalization: str = "NFKC",
        split: str = "script",
        unknown_aliases: Sequence[str] = (),
        name: str | None = None,
    ):
        super().__init__(name=name or "tokenizer")
        if list(vocabulary[: len(RESERVED_TOKENS)]) != list(RESERVED_TOKENS):
            raise ValueError(f"vocabulary must start with {RESERVED_TOKENS}")
        self.kind = kind
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.normalization = normalization
        self.split = split
        self.unknown_aliases = tuple(unknown_aliases)
        self.vocabulary_size = len(self.vocabulary)
        self._id_to_token = tf.constant(self.vocabulary, dtype=tf.string)
        if kind == "subword":
            self._wordpiece = tf_text.FastWordpieceTokenizer(
                vocab=self.vocabulary,
                suffix_indicator="##",
                token_out_type=tf.int64,
                unknown_token=UNK,
                no_pretokenization=True,
                support_detokenization=True,
            )
        else:
            initializer = tf.lookup.TextFileInitializer(
                str(vocabulary_file),
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            # Anonymous: TensorFlow otherwise shares a table between every tokenizer whose
            # vocabulary file has the same path in one process, so a second run at a
            # reused path (a test, a notebook, the in-process demo) would silently look
            # tokens up in the first run's vocabulary.
            self._table = tf.lookup.StaticHashTable(
                initializer, default_value=UNK_ID, experimental_is_anonymous=True
            )

    # -- text -> pieces ------------------------------------------------------------

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Normalize (and case-fold) a `tf.string` tensor of any shape."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.normalization:
            # normalize_utf8 fails on invalid UTF-8; repair it first.
            texts = tf.strings.unicode_transcode(
                texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
            )
            texts = tf_text.normalize_utf8(texts, self.normalization)
        if self.lowercase:
            texts = tf_text.case_fold_utf8(texts)
        return texts

    def split_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Normalized texts [batch] -> words, RaggedTensor [batch, (words)]."""
        texts = self.normalize(texts)
        if self.split == "whitespace":
            return tf.strings.split(texts)
        return tf_text.regex_split(texts, _DELIMITER, keep_delim_regex_pattern=_SEPARATE)

    def pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Texts [batch] -> token strings [batch, (tokens)] before id lookup."""
        if self.kind == "char":
            texts = self.normalize(texts)
            return tf.strings.unicode_split(texts, "UTF-8", errors="replace")
        return self.split_words(texts)

    # -- ids ------------------------------------------------------------------------

    def tokenize(
        self, texts: tf.Tensor, max_length: int | None = None, truncate: str = "head"
    ) -> tf.RaggedTensor:
        """Texts `tf.string [batch]` -> ids `int64 [batch, (tokens)]`, at most `max_length` a
        text: its first ones, its last ones or both (`truncate`, see `keep_ends`)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if truncate not in TRUNCATIONS:
            raise ValueError(f"truncate must be one of {', '.join(TRUNCATIONS)}, got {truncate!r}")
        if max_length:
            texts = cap_bytes(texts, max_length * BYTES_PER_TOKEN_CAP, truncate)
        if self.kind == "subword":
            words = self.split_words(texts)
            ids = self._wordpiece.tokenize(words).merge_dims(-2, -1)
        else:
            pieces = self.pieces(texts)
            ids = tf.ragged.map_flat_values(self._lookup, pieces)
        if self.unknown_aliases:
            ids = tf.ragged.map_flat_values(self._map_aliases, ids, self.pieces_for_alias(texts))
        if max_length:
            ids = keep_ends(ids, *end_lengths(max_length, truncate))
        return ids

    def pieces_for_alias(self, texts: tf.Tensor) -> tf.RaggedTensor:
        if self.kind == "subword":
            raise ValueError("unknown_aliases is supported for word and char tokenizers")
        return self.pieces(texts)

    def _map_aliases(self, ids: tf.Tensor, pieces: tf.Tensor) -> tf.Tensor:
        is_alias = tf.zeros_like(ids, dtype=tf.bool)
        for alias in self.unknown_aliases:
            is_alias = tf.logical_or(is_alias, tf.equal(pieces, alias))
        return tf.where(is_alias, tf.constant(UNK_ID, ids.dtype), ids)

    def _lookup(self, tokens: tf.Tensor) -> tf.Tensor:
        return self._table.lookup(_escape_in_graph(tokens))

    def encode_padded(self, texts: tf.Tensor, max_length: int, truncate: str = "head") -> tf.Tensor:
        """Texts [batch] -> int32 ids [batch, time >= 1], zero-padded on the right."""
        ids = self.tokenize(texts, max_length, truncate).to_tensor(default_value=PAD_ID)
        # An all-empty batch still gets one (masked) time step.
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])
        return tf.cast(ids, tf.int32)  # (batch, time)

    def id_to_token(self, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.clip_by_value(tf.cast(ids, tf.int32), 0, self.vocabulary_size - 1)
        return tf.gather(self._id_to_token, ids)

    def detokenize(self, ids: tf.Tensor | tf.RaggedTensor) -> tf.Tensor:
        """Ids [batch, (tokens)] -> texts [batch]; reserved ids are dropped."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        ids = tf.cast(ids, tf.int64)
        keep = tf.logical_or(ids > EOS_ID, tf.equal(ids, UNK_ID))
        ids = tf.ragged.boolean_mask(ids, keep)
        if self.kind == "subword":
            words = self._wordpiece.detokenize(ids)
            return words
        tokens = tf.ragged.map_flat_values(self.id_to_token, ids)
        separator = "" if self.kind == "char" else " "
        return tf.strings.reduce_join(tokens, axis=-1, separator=separator)

    # -- persistence ----------------------------------------------------------------

    def settings(self) -> dict:
        return {
            "kind": self.kind,
            "lowercase": self.lowercase,
            "normalization": self.normalization,
            "split": self.split,
            "unknown_aliases": list(self.unknown_aliases),
            "vocabulary_size": self.vocabulary_size,
        }

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Load `tokenizer.json` and `vocab.txt` from a run directory."""
        directory = Path(directory)
        settings_path, vocabulary_path = directory / SETTINGS_FILE, directory / VOCABULARY_FILE
        for path in (settings_path, vocabulary_path):
            if not path.is_file():
                raise RunDirError(
                    f"{directory}: missing {path.name}; is this a textrnn run directory?"
                )
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8"))
            vocabulary = read_vocabulary(vocabulary_path)
        except (ValueError, UnicodeDecodeError) as error:
            raise RunDirError(f"{directory}: corrupt tokenizer files ({error})") from None
        missing = [
            key
            for key in ("kind", "lowercase", "normalization", "split", "vocabulary_size")
            if not isinstance(settings, dict) or key not in settings
        ]
        if missing:
            raise RunDirError(
                f"{settings_path}: corrupt tokenizer settings (missing {', '.join(missing)}); "
                "retrain with --restart"
            )
        if len(vocabulary) != settings.get("vocabulary_size"):
            raise RunDirError(
                f"{vocabulary_path}: {len(vocabulary)} tokens, tokenizer.json says "
                f"{settings.get('vocabulary_size')}; the run directory is corrupt"
            )
        if vocabulary[: len(RESERVED_TOKENS)] != list(RESERVED_TOKENS):
            raise RunDirError(
                f"{vocabulary_path}: corrupt vocabulary (must start with "
                f"{' '.join(RESERVED_TOKENS)}); retrain with --restart"
            )
        return cls(
            kind=settings["kind"],
            vocabulary=vocabulary,
            vocabulary_file=vocabulary_path,
            lowercase=settings["lowercase"],
            normalization=settings["normalization"],
            split=settings["split"],
            unknown_aliases=settings.get("unknown_aliases", ()),
        )


def end_lengths(max_length: int, truncate: str) -> tuple[int, int]:
    """(tokens kept from the start, from the end) of a text longer than `max_length`.

    "head+tail" keeps a quarter from the start and the rest from the end: Sun et al.
    (2019, "How to fine-tune BERT for text classification") found 128 + 382 of 510 best
    on long reviews, where the verdict tends to come last.
    """
    if truncate == "head":
        return max_length, 0
    if truncate == "tail":
        return 0, max_length
    head = max_length // 4
    return head, max_length - head


def keep_ends(ids: tf.RaggedTensor, head: int, tail: int) -> tf.RaggedTensor:
    """Each row's first `head` and last `tail` items (the whole row when it is not longer)."""
    lengths = ids.row_lengths()  # (batch,)
    positions = tf.ragged.range(tf.zeros_like(lengths), lengths)  # (batch, (items))
    from_end = tf.expand_dims(lengths, 1) - positions  # 1 for the last item
    keep = tf.logical_or(positions < head, from_end <= tail)
    return tf.ragged.boolean_mask(ids, keep)


def cap_bytes(texts: tf.Tensor, cap: int, truncate: str = "head") -> tf.Tensor:
    """Texts cut to their first `cap` bytes, their last, or both ends joined by a space
    (`truncate`); shorter texts are left whole. Bounds the work on huge texts."""
    if truncate == "head":
        return tf.strings.substr(texts, 0, cap)
    lengths = tf.strings.length(texts)
    caps = tf.fill(tf.shape(texts), cap)
    tails = tf.strings.substr(texts, tf.maximum(lengths - cap, 0), caps)
    if truncate == "tail":
        return tails
    heads = tf.strings.substr(texts, tf.zeros_like(caps), caps)
    return tf.where(lengths > 2 * cap, heads + " " + tails, texts)


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [unescape_token(line) for line in lines]


def save_tokenizer_files(
    directory: str | os.PathLike, config: TokenizerConfig, vocabulary: Sequence[str]
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        directory / VOCABULARY_FILE, "".join(escape_token(t) + "\n" for t in vocabulary)
    )
    settings = {
        "kind": config.kind,
        "lowercase": config.lowercase,
        "normalization": config.normalization,
        "split": config.split,
        "unknown_aliases": list(config.unknown_aliases),
        "vocabulary_size": len(vocabulary),
    }
    atomic_write_text(directory / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")


def count_pieces(config: TokenizerConfig, texts: Iterable[str], batch_size: int = 4096) -> Counter:
    """How often each word (each character for `char`) occurs in `texts`, split in the graph
    exactly as at run time; reserved tokens and unknown aliases are left out."""
    # A throwaway tokenizer gives the exact same pre-tokenization as the real one.
    splitter = Tokenizer.__new__(Tokenizer)
    tf.Module.__init__(splitter, name="splitter")
    splitter.kind, splitter.lowercase = config.kind, config.lowercase
    splitter.normalization, splitter.split = config.normalization, config.split
    counts: Counter[str] = collections.Counter()
    batch: list[str] = []

    def flush() -> None:
        if not batch:
            return
        pieces = (
            splitter.pieces(tf.constant(batch))
            if config.kind == "char"
            else splitter.split_words(tf.constant(batch))
        )
        values, _, freq = tf.unique_with_counts(pieces.flat_values)
        for token, n in zip(values.numpy(), freq.numpy(), strict=True):
            counts[token.decode("utf-8", errors="replace")] += int(n)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    for token in list(counts):
        if token in RESERVED_TOKENS or token in config.unknown_aliases:
            del counts[token]
    return counts


def learn_vocabulary(
    config: TokenizerConfig, texts: Iterable[str], learner: str | None = None
) -> list[str]:
    """Learn a vocabulary from `texts` with the same in-graph splitting used at run time.

    `learner` (subword only): one of `textrnn.wordpiece.LEARNERS`; default `config.learner`.
    """
    counts = count_pieces(config, texts)
    if config.kind == "subword":
        return learn_wordpiece(
            counts,
            config.vocabulary_size,
            RESERVED_TOKENS,
            min_frequency=config.min_frequency,
            learner=learner or config.learner,
        )
    ranked = sorted(
        (item for item in counts.items() if item[1] >= config.min_frequency),
        key=lambda item: (-item[1], item[0]),
    )
    room = config.vocabulary_size - len(RESERVED_TOKENS)
    return list(RESERVED_TOKENS) + [token for token, _ in ranked[:room]]


def build_tokenizer(
    config: TokenizerConfig, texts: Iterable[str], directory: str | os.PathLike
) -> Tokenizer:
    """Learn a vocabulary from `texts`, save it in `directory`, return the loaded tokenizer."""
    vocabulary = learn_vocabulary(config, texts)
    save_tokenizer_files(directory, config, vocabulary)
    return Tokenizer.load(directory)


ENCODE_CHUNK = 8192  # texts per tokenizer call: bounds memory on large corpora


def encode_texts(
    tokenizer: Tokenizer, texts: list[str], max_length: int | None = None, truncate: str = "head"
) -> tf.RaggedTensor:
    """Tokenize `texts` in chunks (bounded memory), truncating rows to `max_length`."""
    parts = [
        tokenizer.tokenize(
            tf.constant(texts[i : i + ENCODE_CHUNK], tf.string), max_length, truncate
        )
        for i in range(0, max(1, len(texts)), ENCODE_CHUNK)
    ]  # no texts: one empty part, so the result is an empty (0, None) ragged tensor
    return tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]


def encode_rows(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """`encode_texts` as one int32 array per text (untruncated)."""
    ids = encode_texts(tokenizer, texts)
    values = ids.flat_values.numpy().astype(np.int32)
    splits = ids.row_splits.numpy()
    return [values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1)]


def count_unknown(ids: tf.RaggedTensor | np.ndarray) -> int:
    values = ids.flat_values if isinstance(ids, tf.RaggedTensor) else ids
    return int(tf.reduce_sum(tf.cast(tf.equal(values, UNK_ID), tf.int32)))
