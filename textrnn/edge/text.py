"""The in-graph tokenizer (`textrnn.tokenizers`) rebuilt on the host: numpy-free, TF-free.

`HostTokenizer` gives the ids the in-graph `Tokenizer` gives, setting by setting:

- normalization (`NFKC`, `NFC`, `NFKD`, `NFD`): Python's `unicodedata`, corrected by
  a per-character table of the code points where tensorflow-text's ICU (a newer
  Unicode version) normalizes a character differently;
- lowercase: tensorflow-text's `case_fold_utf8` is ICU's NFKC_Casefold, not
  `str.casefold`: NFD, then each character mapped to its NFKC_Casefold string
  (a table of the characters where it differs from a Python baseline), then NFC;
- word split (`script`: whitespace runs separate words, and every punctuation /
  symbol / Han / Hiragana / Katakana character is a word of its own; `whitespace`:
  TensorFlow's `tf.strings.split` whitespace): character classes as code-point
  ranges that RE2 itself produced at export time;
- subword: WordPiece, greedy longest match first with `##` continuations, a word
  with no full match (or over 100 bytes) is one `[UNK]`, as `FastWordpieceTokenizer`;
- char: code points; `unknown_aliases` map to `[UNK]`; `max_length` cuts the UTF-8
  bytes first (`BYTES_PER_TOKEN_CAP`) exactly where the graph cuts them.

The tables live in the export's `tokenizer.json` (see `textrnn.edge.text_tables`,
which computes them with TensorFlow); this module only reads them.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textrnn.fileio import unescape_token

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
BYTES_PER_TOKEN_CAP = 64  # textrnn.tokenizers.BYTES_PER_TOKEN_CAP
WORDPIECE_MAX_BYTES = 100  # FastWordpieceTokenizer's max_bytes_per_token default
SUFFIX = "##"


class CharacterClass:
    """A set of code points stored as sorted, inclusive `[first, last]` ranges."""

    def __init__(self, ranges: Sequence[Sequence[int]]):
        self.starts = [int(first) for first, _ in ranges]
        self.ends = [int(last) for _, last in ranges]

    def __contains__(self, character: str) -> bool:
        point = ord(character)
        index = bisect.bisect_right(self.starts, point) - 1
        return index >= 0 and point <= self.ends[index]


def casefold_baseline(character: str) -> str:
    """Python's closest equivalent of ICU's NFKC_Casefold for one character."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", character).casefold())
    return unicodedata.normalize("NFC", folded)


def _code_point_table(table: dict[str, str]) -> dict[str, str]:
    return {chr(int(point, 16)): value for point, value in table.items()}


@dataclass
class HostTokenizer:
    """Token ids from text, as `textrnn.tokenizers.Tokenizer.tokenize` computes them.

    Args:
        settings: the tokenizer's settings and host tables (export `tokenizer.json`).
        vocabulary: the tokens, ids are positions (reserved tokens first).
    """

    settings: dict[str, Any]
    vocabulary: list[str]

    def __post_init__(self) -> None:
        self.kind = self.settings["kind"]
        self.lowercase = bool(self.settings["lowercase"])
        self.normalization = self.settings["normalization"]
        self.split = self.settings["split"]
        self.unknown_aliases = frozenset(self.settings.get("unknown_aliases", ()))
        tables = self.settings.get("host_tables", {})
        self._normalize_fixes = _code_point_table(tables.get("normalize", {}))
        self._casefold_fixes = _code_point_table(tables.get("casefold", {}))
        self._whitespace = CharacterClass(tables.get("whitespace", []))
        self._separate = CharacterClass(tables.get("separate", []))
        self.ids: dict[str, int] = {}
        for index, token in enumerate(self.vocabulary):
            self.ids.setdefault(token, index)
        self.vocabulary_size = len(self.vocabulary)

    # -- text -> pieces ------------------------------------------------------------

    def normalize(self, text: str) -> str:
        if self.normalization:
            if self._normalize_fixes:
                text = "".join(self._normalize_fixes.get(c, c) for c in text)
            text = unicodedata.normalize(self.normalization, text)
        if self.lowercase:
            text = self.casefold(text)
        return text

    def casefold(self, text: str) -> str:
        """ICU's NFKC_Casefold: NFD, per-character NFKC_Casefold mapping, NFC."""
        mapped = []
        for character in unicodedata.normalize("NFD", text):
            fixed = self._casefold_fixes.get(character)
            mapped.append(fixed if fixed is not None else casefold_baseline(character))
        return unicodedata.normalize("NFC", "".join(mapped))

    def split_words(self, text: str) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        script = self.split == "script"
        for character in text:
            if character in self._whitespace:
                if current:
                    words.append("".join(current))
                    current = []
            elif script and character in self._separate:
                if current:
                    words.append("".join(current))
                    current = []
                words.append(character)
            else:
                current.append(character)
        if current:
            words.append("".join(current))
        return words

    def pieces(self, text: str) -> list[str]:
        text = self.normalize(text)
        if self.kind == "char":
            return list(text)
        return self.split_words(text)

    # -- ids ------------------------------------------------------------------------

    def tokenize(self, text: str | bytes, max_length: int | None = None) -> list[int]:
        """One text -> ids (no `[BOS]` / `[EOS]`), truncated to `max_length` tokens."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if max_length:
            raw = text.encode("utf-8", errors="surrogatepass")
            cap = max_length * BYTES_PER_TOKEN_CAP
            if len(raw) > cap:
                text = raw[:cap].decode("utf-8", errors="replace")
        pieces = self.pieces(text)
        if self.kind == "subword":
            ids = [i for word in pieces for i in self.wordpiece(word)]
        else:
            ids = [UNK_ID if p in self.unknown_aliases else self.ids.get(p, UNK_ID) for p in pieces]
        return ids[:max_length] if max_length else ids

    def wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece of one word; no full match -> `[UNK]`."""
        if len(word.encode("utf-8", errors="surrogatepass")) > WORDPIECE_MAX_BYTES:
            return [UNK_ID]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while end > start:
                piece = word[start:end] if start == 0 else SUFFIX + word[start:end]
                found = self.ids.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [UNK_ID]
            ids.append(found)
            start = end
        return ids

    # -- ids -> text ----------------------------------------------------------------

    def token(self, token_id: int) -> str:
        return self.vocabulary[min(max(int(token_id), 0), self.vocabulary_size - 1)]

    def detokenize(self, ids: Sequence[int]) -> str:
        """Ids -> text; reserved ids other than `[UNK]` are dropped (as in the graph)."""
        tokens = [self.token(i) for i in ids if int(i) > EOS_ID or int(i) == UNK_ID]
        if self.kind == "char":
            return "".join(tokens)
        if self.kind == "word":
            return " ".join(tokens)
        out: list[str] = []
        for index, token in enumerate(tokens):
            if index and token.startswith(SUFFIX) and len(token) > len(SUFFIX):
                out.append(token[len(SUFFIX) :])
            else:
                out.append((" " if index else "") + token)
        return "".join(out)


def read_vocabulary(text: str) -> list[str]:
    """`vocab.txt` content -> tokens (the escaping of `textrnn.fileio.escape_token`)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [unescape_token(line) for line in lines]
