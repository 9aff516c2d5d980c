"""In-graph tokenizers: round trips, [UNK], vocabulary limits, persistence, hostile input,
chunked encoding of corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from textrnn import tokenizers
from textrnn.config import TokenizerConfig
from textrnn.errors import RunDirError
from textrnn.tokenizers import (
    RESERVED_TOKENS,
    UNK,
    UNK_ID,
    Tokenizer,
    build_tokenizer,
    encode_rows,
    encode_texts,
    escape_token,
    learn_vocabulary,
    read_vocabulary,
    unescape_token,
)

CORPUS = [
    "A good film!",
    "a good, good story",
    "the film was good",
    "a bad film",
    "bad acting; bad story",
]


def _texts(tensor: tf.Tensor) -> list[str]:
    return [value.decode("utf-8") for value in tensor.numpy()]


def _build(tmp_path, **settings) -> Tokenizer:
    return build_tokenizer(TokenizerConfig(**settings), CORPUS, tmp_path / "tok")


def test_word_round_trip_and_unknown(tmp_path):
    tokenizer = _build(tmp_path, kind="word")
    assert tokenizer.vocabulary[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS)
    ids = tokenizer.tokenize(tf.constant(["A GOOD film!", "a zebra film"]))
    assert _texts(tokenizer.detokenize(ids)) == ["a good film !", f"a {UNK} film"]
    assert ids[1][1].numpy() == UNK_ID
    assert UNK_ID not in ids[0].numpy()


def test_word_split_is_the_same_when_learning_and_at_run_time(tmp_path):
    tokenizer = _build(tmp_path, kind="word")
    for token in ("good", ",", ";", "!", "story"):
        assert token in tokenizer.vocabulary
    assert "good," not in tokenizer.vocabulary and "A" not in tokenizer.vocabulary


def test_whitespace_split_and_unknown_aliases(tmp_path):
    corpus = ["a <unk> film", "a good film", "<unk> <unk>"]
    config = TokenizerConfig(kind="word", split="whitespace", unknown_aliases=("<unk>",))
    tokenizer = build_tokenizer(config, corpus, tmp_path / "tok")
    assert "<unk>" not in tokenizer.vocabulary
    ids = tokenizer.tokenize(tf.constant(["a <unk> film", "good,film"]))
    assert ids[0].numpy().tolist()[1] == UNK_ID
    assert ids[1].numpy().tolist() == [UNK_ID]  # "good,film" is one unknown word


def test_lowercase_off_keeps_case(tmp_path):
    tokenizer = _build(tmp_path, kind="word", lowercase=False)
    assert "A" in tokenizer.vocabulary and "a" in tokenizer.vocabulary


def test_subword_round_trip(tmp_path):
    tokenizer = _build(tmp_path, kind="subword", vocabulary_size=60)
    assert tokenizer.kind == "subword"
    ids = tokenizer.tokenize(tf.constant(["a good film", "bad story!"]))
    assert UNK_ID not in ids.flat_values.numpy()
    assert _texts(tokenizer.detokenize(ids)) == ["a good film", "bad story !"]
    # An unseen word becomes pieces (or [UNK]), never an error.
    unseen = tokenizer.tokenize(tf.constant(["goodfilm zzz€"]))
    assert unseen.flat_values.shape[0] >= 1


def test_char_round_trip_and_unknown(tmp_path):
    tokenizer = _build(tmp_path, kind="char")
    ids = tokenizer.tokenize(tf.constant(["good film", "good q"]))
    assert _texts(tokenizer.detokenize(ids))[0] == "good film"
    assert ids[1].numpy().tolist()[-1] == UNK_ID  # "q" is not in the corpus


def test_min_frequency_and_vocabulary_size():
    frequent_first = learn_vocabulary(TokenizerConfig(kind="word", min_frequency=3), CORPUS)
    assert set(frequent_first[len(RESERVED_TOKENS) :]) == {
        "good",
        "a",
        "film",
        "bad",
    }  # counts 4, 3, 3, 3
    capped = learn_vocabulary(TokenizerConfig(kind="word", vocabulary_size=8), CORPUS)
    assert capped == list(RESERVED_TOKENS) + [
        "good",
        "a",
        "bad",
        "film",
    ]  # by count, then alphabetically
    everything = learn_vocabulary(TokenizerConfig(kind="word"), CORPUS)
    assert len(everything) == len(set(everything))
    assert len(everything) == len(RESERVED_TOKENS) + 11


def test_char_vocabulary_with_newline_backslash_and_carriage_return_survives_save_and_load(
    tmp_path,
):
    corpus = ["a\nb", "c\\d", "e\rf", "tab\there"]
    tokenizer = build_tokenizer(
        TokenizerConfig(kind="char", normalization=""), corpus, tmp_path / "tok"
    )
    for char in ("\n", "\\", "\r", "\t"):
        assert char in tokenizer.vocabulary
    on_disk = (tmp_path / "tok" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert len(on_disk) == tokenizer.vocabulary_size + 1  # one line per token, newline-terminated
    reloaded = Tokenizer.load(tmp_path / "tok")
    assert reloaded.vocabulary == tokenizer.vocabulary
    ids = reloaded.tokenize(tf.constant(["a\nb\\c\rd"]))
    assert UNK_ID not in ids.flat_values.numpy()
    assert _texts(reloaded.detokenize(ids)) == ["a\nb\\c\rd"]


@pytest.mark.parametrize("token", ["plain", "new\nline", "back\\slash", "\\n", "\r\n", "\\", "x\\"])
def test_escape_round_trip(token):
    escaped = escape_token(token)
    assert "\n" not in escaped and "\r" not in escaped
    assert unescape_token(escaped) == token


def test_saved_settings_and_reload(tmp_path):
    tokenizer = _build(tmp_path, kind="word", lowercase=False, split="whitespace")
    settings = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert settings == tokenizer.settings()
    reloaded = Tokenizer.load(tmp_path / "tok")
    assert reloaded.settings() == tokenizer.settings()
    assert read_vocabulary(tmp_path / "tok" / "vocab.txt") == tokenizer.vocabulary
    text = tf.constant(["A good film!"])
    assert reloaded.tokenize(text).to_list() == tokenizer.tokenize(text).to_list()


def test_missing_or_corrupt_tokenizer_files(tmp_path):
    with pytest.raises(RunDirError, match="missing"):
        Tokenizer.load(tmp_path)
    _build(tmp_path, kind="word")
    directory = tmp_path / "tok"
    (directory / "vocab.txt").write_text("[PAD]\n[UNK]\n[BOS]\n[EOS]\nonly\n", encoding="utf-8")
    with pytest.raises(RunDirError, match="corrupt"):
        Tokenizer.load(directory)
    (directory / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RunDirError, match="corrupt"):
        Tokenizer.load(directory)


@pytest.mark.parametrize("kind", ["word", "subword", "char"])
@pytest.mark.parametrize("normalization", ["NFKC", ""])
def test_invalid_utf8_does_not_crash(tmp_path, kind, normalization):
    tokenizer = _build(tmp_path, kind=kind, normalization=normalization, vocabulary_size=60)
    texts = tf.constant([b"good \xff\xfe film", b"\xc3", b"bad \xe2\x82 story", b""])
    ids = tokenizer.tokenize(texts, max_length=16)
    assert ids.nrows() == 4
    padded = tokenizer.encode_padded(texts, 16)
    assert padded.shape[0] == 4 and padded.dtype == tf.int32
    assert "good" in _texts(tokenizer.detokenize(ids))[0].replace(" ", "") or kind == "subword"


@pytest.mark.parametrize("kind", ["word", "subword", "char"])
def test_a_one_megabyte_line_is_truncated_to_max_length(tmp_path, kind):
    tokenizer = _build(tmp_path, kind=kind, vocabulary_size=60)
    line = "good film " * 100_000  # 1 MB, one line
    ids = tokenizer.tokenize(tf.constant([line, "bad"]), max_length=16)
    assert ids.row_lengths().numpy().tolist()[0] == 16
    assert tokenizer.encode_padded(tf.constant([line]), 16).shape == (1, 16)


def test_encode_padded_pads_right_and_keeps_one_step_for_empty_batches(tmp_path):
    tokenizer = _build(tmp_path, kind="word")
    padded = tokenizer.encode_padded(tf.constant(["a good film", "bad"]), 8).numpy()
    assert padded.shape == (2, 3)
    assert padded[1, 0] != 0 and (padded[1, 1:] == 0).all()
    empty = tokenizer.encode_padded(tf.constant(["", "   "]), 8).numpy()
    assert empty.shape == (2, 1) and (empty == 0).all()


def test_tokenizer_runs_inside_a_tf_function(tmp_path):
    tokenizer = _build(tmp_path, kind="word")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(texts):
        return tokenizer.encode_padded(texts, 8)

    assert (
        encode(tf.constant(["a good film"])).numpy().tolist()
        == tokenizer.encode_padded(tf.constant(["a good film"]), 8).numpy().tolist()
    )


# ----------------------------------------------------------------------------- encode_texts


def test_encode_texts_in_chunks_equals_one_call(tmp_path, monkeypatch):
    tokenizer = _build(tmp_path, kind="word")
    texts = [f"{CORPUS[i % len(CORPUS)]} {'good ' * (i % 4)}" for i in range(7)]
    whole = tokenizer.tokenize(tf.constant(texts)).to_list()
    for chunk in (1, 2, 3, 6, 7, 8):  # many chunks, a short last one, exactly one, fewer texts
        monkeypatch.setattr(tokenizers, "ENCODE_CHUNK", chunk)
        ids = encode_texts(tokenizer, texts)
        assert isinstance(ids, tf.RaggedTensor) and ids.nrows() == len(texts)
        assert ids.to_list() == whole, chunk
        rows = encode_rows(tokenizer, texts)
        assert [row.tolist() for row in rows] == whole
        assert all(row.dtype == np.int32 for row in rows)


def test_encode_texts_truncates_every_chunk_to_max_length(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizers, "ENCODE_CHUNK", 2)
    tokenizer = _build(tmp_path, kind="word")
    texts = ["a good film", "good " * 50, "bad", "a bad film !", "good " * 9]
    ids = encode_texts(tokenizer, texts, max_length=3)
    assert ids.row_lengths().numpy().tolist() == [3, 3, 1, 3, 3]
    full = encode_texts(tokenizer, texts).to_list()
    assert ids.to_list() == [row[:3] for row in full]
    assert [len(row) for row in full] == [3, 50, 1, 4, 9]  # rows: untruncated by default
    assert [len(row) for row in encode_rows(tokenizer, texts)] == [3, 50, 1, 4, 9]


def test_encode_texts_of_nothing_and_of_empty_strings(tmp_path, monkeypatch):
    tokenizer = _build(tmp_path, kind="word")
    for chunk in (2, tokenizers.ENCODE_CHUNK):
        monkeypatch.setattr(tokenizers, "ENCODE_CHUNK", chunk)
        nothing = encode_texts(tokenizer, [])
        assert isinstance(nothing, tf.RaggedTensor)
        assert nothing.nrows() == 0 and nothing.flat_values.shape[0] == 0
        assert encode_rows(tokenizer, []) == []
        blanks = encode_texts(tokenizer, ["", "   ", "good"], max_length=4)
        assert blanks.to_list() == [[], [], tokenizer.tokenize(tf.constant(["good"])).to_list()[0]]
        assert [row.size for row in encode_rows(tokenizer, ["", "good", ""])] == [0, 1, 0]


def test_a_vocabulary_rewritten_at_the_same_path_is_read_anew(tmp_path, monkeypatch):
    """Lookup tables are not shared between tokenizers whose vocab.txt has one path."""
    import tensorflow as tf

    from textrnn.config import TokenizerConfig
    from textrnn.tokenizers import build_tokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    first = build_tokenizer(TokenizerConfig(kind="word"), ["good film", "good"], "run")
    assert first.tokenize(tf.constant(["good film"])).to_list() == [[4, 5]]
    for path in (tmp_path / "run").iterdir():
        path.unlink()
    second = build_tokenizer(TokenizerConfig(kind="word"), ["bad movie", "bad"], "run")
    assert second.tokenize(tf.constant(["bad movie"])).to_list() == [[4, 5]]  # not [UNK]s


@pytest.mark.parametrize(
    ("truncate", "kept"),
    [
        ("head", list(range(8))),
        ("tail", list(range(92, 100))),
        ("head+tail", [0, 1, *range(94, 100)]),  # a quarter from the start, the rest the end
    ],
)
def test_long_texts_keep_their_head_their_tail_or_both(tmp_path, truncate, kept):
    words = [f"w{i}" for i in range(100)]
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), [" ".join(words)], tmp_path)
    texts = tf.constant([" ".join(words), "w5 w6", " ".join(words * 40)])  # the last: 23 KB
    ids = tokenizer.tokenize(texts, max_length=8, truncate=truncate)
    rows = [_texts(tokenizer.detokenize(ids[i : i + 1]))[0].split() for i in range(3)]
    assert rows[0] == [words[i] for i in kept]
    assert rows[1] == ["w5", "w6"]  # shorter texts stay whole
    assert rows[2] == rows[0]  # cut to 8 x 64 bytes at each end first: the ends survive
    padded = tokenizer.encode_padded(texts, 8, truncate)
    assert padded.shape == (3, 8)
    with pytest.raises(ValueError, match="truncate must be one of"):
        tokenizer.tokenize(texts, 8, truncate="middle")
