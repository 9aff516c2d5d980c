"""textrnn.language_model.data: contiguous batching, corpus encoding, bad training files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textrnn import language_model as lm_lib
from textrnn.config import TokenizerConfig
from textrnn.errors import DataError
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID, build_tokenizer

from .tiny_lm import train_lm


@pytest.mark.parametrize(
    "tokens, batch, seq_len", [(1, 1, 1), (100, 4, 7), (101, 3, 10), (37, 8, 5), (64, 8, 8)]
)
def test_contiguous_batching_covers_every_token_once(tokens: int, batch: int, seq_len: int) -> None:
    targets = np.arange(10, 10 + tokens, dtype=np.int32)  # distinct, never 0
    inputs = np.concatenate([[BOS_ID], targets[:-1]]).astype(np.int32)
    batches = lm_lib.contiguous_batches(inputs, targets, batch, seq_len)
    seen = np.concatenate([y.ravel() for _, y in batches])
    seen = seen[seen != PAD_ID]
    np.testing.assert_array_equal(np.sort(seen), targets)  # each exactly once
    for x, y in batches:
        assert x.shape == y.shape == (batch, seq_len)
        real = y != PAD_ID
        np.testing.assert_array_equal(x != PAD_ID, real)  # an input for every target
    # Row r of batch k + 1 continues row r of batch k.
    rows = np.concatenate([y for _, y in batches], axis=1)
    for row in rows:
        real = row[row != PAD_ID]
        np.testing.assert_array_equal(np.diff(real), np.ones(len(real) - 1))


def test_encode_corpus_layouts(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), ["a b c"], tmp_path)
    stream = lm_lib.encode_corpus(tokenizer, "a b\nc\n", "continuous")
    assert stream.inputs[0][0] == BOS_ID and stream.num_tokens == 3
    lines = lm_lib.encode_corpus(tokenizer, "a b\n\nc\n", "lines")
    assert lines.skipped_empty == 1 and lines.num_tokens == 5  # a b [EOS] c [EOS]
    assert all(t[-1] == EOS_ID for t in lines.targets)


def test_training_file_shorter_than_one_sequence(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("tiny text\n", encoding="utf-8")
    with pytest.raises(DataError, match="--seq-len"):
        train_lm(tmp_path / "run", short)


def test_binary_training_file_is_rejected(tmp_path: Path) -> None:
    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    with pytest.raises(DataError, match="binary"):
        train_lm(tmp_path / "run", binary)


def test_word_model_with_unk_aliases(tmp_path: Path) -> None:
    text = "".join(f"the <unk> said {w} to the <unk> .\n" for w in ["yes", "no", "maybe"] * 20)
    train = tmp_path / "ptb.txt"
    train.write_text(text, encoding="utf-8")
    run_dir = tmp_path / "word"
    train_lm(
        run_dir,
        train,
        **{
            "data.layout": "lines",
            "tokenizer.kind": "word",
            "tokenizer.split": "whitespace",
            "tokenizer.unknown_aliases": ["<unk>"],
            "tokenizer.vocabulary_size": 10000,
        },
    )
    vocabulary = (run_dir / "vocab.txt").read_text().split("\n")
    assert "<unk>" not in vocabulary
    metrics = lm_lib.evaluate(run_dir, str(train))
    assert metrics["unknown_tokens"] == 2 * 60
    assert metrics["tokens"] == 60 * 9  # 8 words + [EOS] per line


def test_text_column_reads_a_tables_rows_as_lines(tmp_path):
    from textrnn.language_model.data import read_corpus_text

    table = tmp_path / "phrases.tsv"
    table.write_text("label\tsentence\n1\ta fine  film\n0\tdull\n", encoding="utf-8")
    assert read_corpus_text(str(table), "utf-8", "--train", "sentence") == "a fine film\ndull\n"
    with pytest.raises(DataError, match="no column 'text'.*columns found: label, sentence"):
        read_corpus_text(str(table), "utf-8", "--train", "text")
