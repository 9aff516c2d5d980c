"""Loading corpora (tsv / csv / jsonl / parquet / txt, encodings, bad files), tf.data pipelines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from textrnn import data as data_lib
from textrnn.errors import DataError
from textrnn.sentiment.data import read_examples

ROWS = [("a good film", "1"), ('he said "fine" NA', "0"), ("great, really", "1")]


def _write(path, rows=ROWS):
    suffix = path.suffix
    if suffix == ".tsv":
        path.write_text(
            "text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows), encoding="utf-8"
        )
    elif suffix == ".csv":
        quoted = ['"' + t.replace('"', '""') + '"' for t, _ in rows]
        path.write_text(
            "text,label\n"
            + "".join(f"{q},{label}\n" for q, (_, label) in zip(quoted, rows, strict=True)),
            encoding="utf-8",
        )
    elif suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"text": t, "label": int(label)}) + "\n" for t, label in rows),
            encoding="utf-8",
        )
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.table({"text": [t for t, _ in rows], "label": [int(label) for _, label in rows]}),
            path,
        )
    elif suffix == ".txt":
        path.write_text("".join(f"__label__{label} {t}\n" for t, label in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet", ".txt"])
def test_every_file_format_loads_the_same_examples(tmp_path, suffix):
    path = _write(tmp_path / f"data{suffix}")
    examples = read_examples(str(path), "text", "label")
    assert examples.texts == [t for t, _ in ROWS]  # quotes and "NA" are data, not syntax
    assert examples.labels == [label for _, label in ROWS]
    assert examples.skipped_empty == examples.skipped_unlabeled == 0


def test_load_table_columns(tmp_path):
    table = data_lib.load_table(str(_write(tmp_path / "d.tsv")))
    assert table.column_names == ["text", "label"] and table.num_rows == 3
    text_table = data_lib.load_table(str(_write(tmp_path / "d.txt")))
    assert text_table.column_names == ["text"]


def test_latin1_file_reads_with_encoding_and_fails_clearly_without(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes("text\tlabel\nplain line\t1\ncafé crème\t0\n".encode("latin-1"))
    examples = read_examples(str(path), "text", "label", encoding="latin-1")
    assert examples.texts == ["plain line", "café crème"]
    with pytest.raises(DataError) as error:
        read_examples(str(path), "text", "label")
    message = str(error.value)
    assert str(path) in message and "line 3" in message and "--encoding" in message


def test_unknown_encoding_names_the_option(tmp_path):
    with pytest.raises(DataError, match="--encoding"):
        read_examples(str(_write(tmp_path / "d.tsv")), "text", "label", encoding="klingon-8")


def test_empty_file_and_header_only_file(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_examples(str(empty), "text", "label")
    header = tmp_path / "header.tsv"
    header.write_text("text\tlabel\n\n")
    with pytest.raises(DataError, match=f"{header} has a header line but no data rows"):
        read_examples(str(header), "text", "label")


def test_unparsable_files_say_what_the_parser_found_in_one_line(tmp_path, capfd):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok", "label": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"could not parse as json \(--train\): JSON parse error"):
        data_lib.load_table(str(bad_json))
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match="could not parse as parquet .*magic bytes"):
        data_lib.load_table(str(fake))
    # datasets logs these errors before raising them: nothing of it reaches the terminal.
    captured = capfd.readouterr()
    assert "Failed to" not in captured.err + captured.out


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_examples(str(tmp_path / "nope.tsv"), "text", "label")
    with pytest.raises(DataError, match="not a file"):
        data_lib.load_table(str(tmp_path), option="--train")


def test_missing_column_lists_the_columns_found(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tpolarity\na good film\t1\n")
    with pytest.raises(DataError) as error:
        read_examples(str(path), "text", "polarity")
    message = str(error.value)
    assert "'text'" in message and "--text-column" in message
    assert "sentence" in message and "polarity" in message
    with pytest.raises(DataError, match="--label-column.*sentence, polarity"):
        read_examples(str(path), "sentence", "label")


def test_rows_without_text_or_label_are_counted(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\na good film\t1\n   \t0\nno label\t\nbad film\t0\n")
    examples = read_examples(str(path), "text", "label")
    assert examples.texts == ["a good film", "bad film"]
    assert examples.skipped_empty == 1 and examples.skipped_unlabeled == 1


def test_all_rows_bad_is_an_error(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n \t1\n")
    with pytest.raises(DataError, match="no usable rows"):
        read_examples(str(path), "text", "label")


def test_read_lines_and_read_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\r\ntwo\nthree")
    assert data_lib.read_lines(path) == ["one", "two", "three"]
    assert data_lib.read_text(path) == "one\r\ntwo\nthree"
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        data_lib.read_text(binary)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataError, match="line 2"):
        data_lib.read_lines(bad)


def test_hub_names_are_not_files():
    assert not data_lib.is_file_reference("stanfordnlp/sst2")
    assert data_lib.is_file_reference("train.tsv")
    assert data_lib.is_file_reference("./corpus")


@pytest.mark.timeout(120)
def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load data set"):
        data_lib.load_table("textrnn-tests/no-such-dataset-anywhere", option="--train")


# ----------------------------------------------------------------------------- pipelines


def _ragged(lengths, seed=0):
    rng = np.random.default_rng(seed)
    rows = [rng.integers(1, 20, size=n).tolist() for n in lengths]
    return tf.ragged.constant(rows, dtype=tf.int64), np.arange(len(rows)) % 2


def test_bucketing_keeps_padding_small():
    lengths = np.random.default_rng(1).integers(1, 60, size=400)
    ids, targets = _ragged(lengths)
    bucketed = data_lib.batched_sequences(
        ids, targets, batch_size=8, max_length=64, shuffle=True, seed=3
    )
    naive = tf.data.Dataset.from_tensor_slices((ids.to_tensor(), targets)).batch(8)
    bucketed_padding = data_lib.padding_fraction(bucketed)
    assert bucketed_padding < 0.15
    assert bucketed_padding < data_lib.padding_fraction(naive) / 2
    seen = sorted(int(y) for batch in bucketed for y in batch[1].numpy())
    assert len(seen) == 400  # nothing dropped
    for x, _ in bucketed:
        assert x.dtype == tf.int32 and x.shape[0] <= 8


def test_padding_fraction_counts_source_and_target_of_pairs():
    # One batch: sources [1, 2] and [3, 0]; targets [BOS, x, EOS] -> inputs of width 2, no padding.
    source = tf.ragged.constant([[1, 2], [3]], dtype=tf.int64)
    target = tf.ragged.constant([[2, 7, 3], [2, 8, 3]], dtype=tf.int64)
    pairs = data_lib.batched_pairs(source, target, 2, max_length=8, shuffle=False, seed=0)
    # 8 positions (2x2 source + 2x2 target input), one of them padding.
    assert data_lib.padding_fraction(pairs) == pytest.approx(1 / 8)


def test_static_shapes_pad_to_max_length_and_drop_the_remainder():
    ids, targets = _ragged([3, 5, 1, 7, 2])
    dataset = data_lib.batched_sequences(
        ids, targets, 2, max_length=8, shuffle=False, seed=0, static_shapes=True
    )
    shapes = [tuple(x.shape) for x, _ in dataset]
    assert shapes == [(2, 8), (2, 8)]


def test_shuffle_is_seeded():
    ids, targets = _ragged([4] * 32)
    first = [
        y.numpy().tolist()
        for _, y in data_lib.batched_sequences(ids, np.arange(32), 4, 8, True, seed=5)
    ]
    again = [
        y.numpy().tolist()
        for _, y in data_lib.batched_sequences(ids, np.arange(32), 4, 8, True, seed=5)
    ]
    assert first == again
    del targets


def test_auto_shard_policy_is_by_file_for_several_files_else_by_data():
    policy = tf.data.experimental.AutoShardPolicy
    assert data_lib.auto_shard_policy(1) == policy.DATA
    assert data_lib.auto_shard_policy(4) == policy.FILE
    assert data_lib.pipeline_options().experimental_distribute.auto_shard_policy == policy.DATA


def test_bucket_boundaries_are_increasing_and_below_max_length():
    for max_length in (1, 2, 8, 64, 512):
        boundaries = data_lib.bucket_boundaries(max_length)
        assert boundaries == sorted(set(boundaries))
        assert all(2 <= b < max_length for b in boundaries)
