"""Translation on the host: tokenize, `encode`, greedy or beam search over `decode_step`.

Lengths, caps, scores and the output text follow the SavedModel's `Translator`:
output tokens <= min(ceil(ratio * source tokens) + offset, max_length if > 0), [EOS]
forced at the cap, GNMT length penalty, detokenized and punctuation re-attached.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from textrnn.decoding.options import check_decoding, flag_name
from textrnn.edge import search
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.text import PAD_ID


@functools.lru_cache(maxsize=1)
def _letter_class() -> str:
    """A regex character class of every Unicode letter (RE2's \\pL)."""
    ranges, start, previous = [], None, None
    for point in range(sys.maxunicode + 1):
        if unicodedata.category(chr(point)).startswith("L"):
            if start is None:
                start = point
            previous = point
        elif start is not None:
            ranges.append((start, previous))
            start = None
    if start is not None:
        ranges.append((start, previous))
    return "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]"


@functools.lru_cache(maxsize=1)
def _joined_hyphen() -> re.Pattern:
    letter = _letter_class()
    return re.compile(f"({letter}) - ({letter})")


def detokenize_punctuation(text: str) -> str:
    """`translator.detokenize_punctuation` on the host: "a , b ( c ) T - Shirt ." -> ..."""
    text = re.sub(r" ([.,!?;:%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{]) ", r"\1", text)
    return _joined_hyphen().sub(r"\1-\2", text)


@dataclass
class EdgeTranslation:
    source: str
    translation: str
    score: float
    hypotheses: list[tuple[str, float]]
    capped: bool
    source_tokens: list[str] = field(default_factory=list)
    target_ids: list[int] = field(default_factory=list)
    attention: np.ndarray | None = None  # (target tokens, source tokens)


@dataclass
class EdgeTranslator:
    """A translation LiteRT export.

    Example:

        translator = EdgeTranslator(EdgeExport.open("litert_models/translation/1"))
        translator.translate("A man is riding a bike.", beam_size=4).translation
    """

    export: EdgeExport

    def __post_init__(self) -> None:
        manifest = self.export.manifest
        self.source_tokenizer = self.export.tokenizers["source"]
        self.target_tokenizer = self.export.tokenizers["target"]
        self.source_length = int(manifest["source_max_length"])
        self.decoding = dict(manifest["decoding"])
        self.bos_id, self.eos_id = int(manifest["bos_id"]), int(manifest["eos_id"])

    def source_ids(self, text: str) -> np.ndarray:
        ids = self.source_tokenizer.tokenize(text, self.source_length)
        padded = np.full([1, self.source_length], PAD_ID, np.int32)
        padded[0, : len(ids)] = ids
        return padded

    def length_limit(self, source_tokens: int, max_length: int, ratio: float) -> int:
        limit = math.ceil(np.float32(ratio) * np.float32(source_tokens))
        limit += int(self.decoding["max_length_offset"])
        return min(limit, max_length) if max_length > 0 else limit

    def translate(
        self,
        text: str,
        beam_size: int | None = None,
        max_length: int = 0,
        length_penalty: float | None = None,
        max_length_ratio: float | None = None,
        n_best: int = 1,
    ) -> EdgeTranslation:
        beam = int(self.decoding["beam_size"] if beam_size is None else beam_size)
        alpha = float(self.decoding["length_penalty"] if length_penalty is None else length_penalty)
        ratio = float(
            self.decoding["max_length_ratio"] if max_length_ratio is None else max_length_ratio
        )
        check_decoding(beam, alpha, ratio, flag_name)
        ids = self.source_ids(text)
        length = int(np.count_nonzero(ids))
        limit = self.length_limit(length, max_length, ratio)
        encoded = self.export.run("encode", source_ids=ids)
        constants = {key: encoded[key] for key in ("memory", "keys", "mask")}
        if beam > 1:
            constants = {key: np.repeat(value, beam, axis=0) for key, value in constants.items()}
        state = {"states": encoded["states"], "feed": encoded["feed"]}

        def step(token_ids, state):
            outputs = self.export.run(
                "decode_step", token_ids=token_ids.astype(np.int32), **state, **constants
            )
            new_state = {"states": outputs["states"], "feed": outputs["feed"]}
            return outputs["log_probs"], new_state, outputs["attention"]

        if beam == 1:
            found = search.greedy_search(step, state, limit, self.bos_id, self.eos_id, alpha)
        else:
            found = search.beam_search(
                step, state, limit, beam, self.bos_id, self.eos_id, alpha, n_best
            )
        texts = [detokenize_punctuation(self.target_tokenizer.detokenize(h)) for h in found.ids]
        best = found.ids[0] if found.ids else []
        return EdgeTranslation(
            source=text,
            translation=texts[0] if texts else "",
            score=found.scores[0] if found.scores else float(search.NEGATIVE),
            hypotheses=list(zip(texts, found.scores, strict=True)),
            capped=len(best) >= limit,
            source_tokens=[self.source_tokenizer.token(i) for i in ids[0, :length]],
            target_ids=best,
            attention=found.attention[0][:, :length] if found.attention else None,
        )
