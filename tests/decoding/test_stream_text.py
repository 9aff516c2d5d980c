"""textrnn.decoding.stream_text: a stream's pieces join to the text of all its ids, with
windows that move (real tokenizers) and windows that must not (a detokenizer whose text at
the boundary depends on what comes before)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import tensorflow as tf

from textrnn.config import TokenizerConfig
from textrnn.decoding.stream_text import StreamText
from textrnn.tokenizers import UNK_ID, build_tokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a walking, talking and singing story; the film was good!",
    "unbelievable storytelling: the players were playing",
    "Ärger über Straßenbahnen — 東京 à la carte",
]


def _stream(detokenize: Callable[[list[int]], str], ids: list[int], window: int, seed: int):
    """Feed `ids` in chunks of 1-9 as a streaming caller does: the pieces, the StreamText
    and the most ids one `update` detokenized."""
    chunks = random.Random(seed)
    text = StreamText(window)
    pieces = []
    longest = 0
    while len(text) < len(ids):
        text.extend(ids[len(text) : len(text) + chunks.randint(1, 9)])
        longest = max(longest, len(text.tail))
        pieces.append(text.update(detokenize(text.tail)))
        text.move_if_due(detokenize)
    return pieces, text, longest


@pytest.mark.parametrize("kind", ["char", "word", "subword"])
def test_pieces_join_to_the_text_of_every_id(tmp_path, kind):
    settings = {"vocabulary_size": 200} if kind == "subword" else {}
    tokenizer = build_tokenizer(TokenizerConfig(kind=kind, **settings), CORPUS, tmp_path)

    def detokenize(ids: list[int]) -> str:
        return tokenizer.detokenize(tf.constant([ids], tf.int32)).numpy()[0].decode("utf-8")

    vocabulary = range(UNK_ID, tokenizer.vocabulary_size)
    for seed in range(4):
        ids = random.Random(seed).choices(vocabulary, k=300)
        pieces, text, longest = _stream(detokenize, ids, window=5, seed=seed)
        assert "".join(pieces) == text.shown == detokenize(ids)
        assert text.anchor > 0
        if kind != "subword":  # every move succeeds: no call reads more than 2 windows + a chunk
            assert longest <= 2 * 5 + 9


def test_a_boundary_that_depends_on_what_precedes_keeps_the_anchor():
    # Capitalize the first letter: the text of a window is never a suffix of the whole.
    def capitalized(ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids).capitalize()

    ids = list(range(100))
    pieces, text, longest = _stream(capitalized, ids, window=4, seed=0)
    assert "".join(pieces) == capitalized(ids)
    assert text.anchor == 0 and longest == len(ids)


def test_a_rewritten_piece_waits_until_it_is_extended():
    text = StreamText(window=2)
    text.extend([1])
    assert text.update("ab") == "ab"
    text.extend([2])
    assert text.update("ac") == ""  # "ab" was shown: wait
    text.extend([3])
    assert text.update("abd") == "d"
    assert text.shown == text.text == "abd"


def test_a_window_must_hold_an_id():
    with pytest.raises(ValueError, match="window must be at least 1"):
        StreamText(window=0)
