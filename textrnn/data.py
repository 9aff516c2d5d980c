"""Corpora in, `tf.data` pipelines out.

Files are loaded with Hugging Face `datasets` (`csv`, `json`, `parquet` and
`text` builders), which also loads a hub data set by name when a network is
there. Before a text file reaches the builder its bytes are checked against
`--encoding`, so a stray Latin-1 byte is reported with its file and line
instead of a decoder traceback.

Pipelines follow what was measured on 2-core machines: tokenize once up
front (the same in-graph tokenizer as serving), cache the ids, bucket batches
by length, and keep tf.data's autotuner off with a small private thread pool
so the input pipeline does not steal the cores that train.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn.errors import DataError

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = {
    ".tsv": "csv",
    ".csv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}
TEXT_SUFFIXES = {".txt", ".text", ".train", ".dev", ".test", ".valid", ""}


def is_file_reference(source: str) -> bool:
    """True when `source` names a local file rather than a hub data set."""
    path = Path(source)
    return (
        path.exists()
        or path.suffix.lower() in TABLE_SUFFIXES
        or path.suffix.lower() in {".txt"}
        or source.startswith((".", "/", "~"))
    )


def check_encoding(path: str | os.PathLike, encoding: str, option: str) -> None:
    """Raise `DataError` naming file and line if `path` is not valid `encoding` text."""
    try:
        "".encode(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (--encoding)") from None
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: not valid {encoding} text "
                    f"(byte 0x{line[error.start]:02x} at column {error.start + 1}) in {option}; "
                    "pass --encoding (e.g. --encoding latin-1)"
                ) from None


def read_lines(
    path: str | os.PathLike, encoding: str = "utf-8", option: str = "--data"
) -> list[str]:
    """All lines of a text file, without line ends; errors name the file and line."""
    path = _existing_file(path, option)
    check_encoding(path, encoding, option)
    with open(path, encoding=encoding, newline="") as handle:
        return [line.rstrip("\r\n") for line in handle]


def read_text(path: str | os.PathLike, encoding: str = "utf-8", option: str = "--data") -> str:
    """A whole text file; rejects binary files and bad encodings with a clear message."""
    path = _existing_file(path, option)
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} looks like a binary file, not text ({option})")
    check_encoding(path, encoding, option)
    return raw.decode(encoding)


def _existing_file(path: str | os.PathLike, option: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"file not found: {path} ({option})")
    if not path.is_file():
        raise DataError(f"not a file: {path} ({option})")
    return path


def _has_data_line(path: Path, encoding: str) -> bool:
    """True if a non-blank line follows the first (header) line of a delimited file."""
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        handle.readline()
        return any(line.strip() for line in handle)


def load_table(
    source: str, encoding: str = "utf-8", option: str = "--train", split: str = "train"
) -> Any:
    """Load a table of rows as a `datasets.Dataset`.

    `source` is a `.tsv` / `.csv` / `.jsonl` / `.json` / `.parquet` file, a
    text file (one row a line, in a `text` column), or a hub data set name
    `NAME[@SPLIT]` (needs a network; nothing in textrnn's tests downloads).
    """
    import datasets

    datasets.disable_progress_bars()
    # CRITICAL: the loaders log a parse error before raising it; the DataError below says it once.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    if not is_file_reference(source):
        name, _, wanted_split = source.partition("@")
        try:
            return datasets.load_dataset(name, split=wanted_split or split)
        except Exception as error:  # noqa: BLE001 - the hub raises many kinds
            raise DataError(
                f"could not load data set {name!r} ({option}): {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''} (no such file either)"
            ) from None
    path = _existing_file(source, option)
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty ({option})")
    builder = TABLE_SUFFIXES.get(suffix, "text")
    kwargs: dict[str, Any] = {}
    if builder != "parquet":
        check_encoding(path, encoding, option)
        kwargs["encoding"] = encoding
    if builder == "csv":
        # Text is data: no quote processing, no "NA" -> NaN guessing.
        kwargs.update(
            delimiter="\t" if suffix == ".tsv" else ",", keep_default_na=False, na_filter=False
        )
        if suffix == ".tsv":
            kwargs["quoting"] = 3  # csv.QUOTE_NONE
        if not _has_data_line(path, encoding):
            raise DataError(f"{path} has a header line but no data rows ({option})")
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # noqa: BLE001 - pandas / pyarrow raise many kinds
        # DatasetGenerationError ("An error occurred while generating the dataset") wraps
        # the parser's own message, which says what is wrong and where.
        while type(error).__name__ == "DatasetGenerationError" and error.__cause__ is not None:
            error = error.__cause__
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        kind = "tsv" if suffix == ".tsv" else builder
        raise DataError(f"{path}: could not parse as {kind} ({option}): {message}") from None
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows ({option})")
    return table


def require_columns(table: Any, columns: dict[str, str], source: str) -> None:
    """Raise `DataError` listing the columns found when a configured one is missing."""
    for option, column in columns.items():
        if column not in table.column_names:
            raise DataError(
                f"{source}: no column {column!r} ({option}); columns found: "
                f"{', '.join(table.column_names)}"
            )


def auto_shard_policy(num_files: int = 1) -> tf.data.experimental.AutoShardPolicy:
    """How a multi-worker job splits a pipeline: by file when there are enough files, else by data.

    FILE gives each worker whole files (no worker reads what it then drops)
    but needs at least one file per worker, or a worker gets nothing; DATA has
    every worker read everything and keep every N-th global batch. textrnn's
    pipelines start from one tokenized, cached corpus, so they use DATA.
    """
    if num_files > 1:
        return tf.data.experimental.AutoShardPolicy.FILE
    return tf.data.experimental.AutoShardPolicy.DATA


def pipeline_options(deterministic: bool = True, num_files: int = 1) -> tf.data.Options:
    """tf.data options measured to keep 2 cores busy training, not tuning.

    The auto-shard policy is set deliberately (`auto_shard_policy`): AUTO would
    try FILE first and warn, then fall back, on our in-memory sources.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = auto_shard_policy(num_files)
    return options


def holdout_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of `count` rows into (held out for validation, kept for training).

    At least one row is held out; the same seed always holds out the same rows.
    """
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, int(round(count * fraction)))
    return order[:cut], order[cut:]


def bucket_boundaries(max_length: int) -> list[int]:
    """Length buckets: fine for short texts, coarser for long ones, up to `max_length`."""
    boundaries, length = [], 2
    while length < max_length:
        boundaries.append(length)
        step = 2 if length < 16 else 4 if length < 32 else 8 if length < 64 else length // 4
        length += step
    return boundaries


def ragged_rows(*columns: tf.RaggedTensor | Any) -> tf.data.Dataset:
    """Dataset of per-example tuples from aligned columns, cached.

    A `tf.RaggedTensor` column yields each row as a dense int32 vector; any
    other column (labels) yields its element. Rows are sliced from the flat
    values by index, which tf.data handles far better than ragged elements.
    """
    parts = []
    for column in columns:
        if isinstance(column, tf.RaggedTensor):
            parts.append((tf.cast(column.flat_values, tf.int32), column.row_splits))
        else:
            parts.append((tf.convert_to_tensor(column), None))

    def row(index: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return tuple(
            values[splits[index] : splits[index + 1]] if splits is not None else values[index]
            for values, splits in parts
        )

    rows = columns[0].nrows() if isinstance(columns[0], tf.RaggedTensor) else len(columns[0])
    return tf.data.Dataset.range(int(rows)).map(row).cache()


def batched_sequences(
    ids: tf.RaggedTensor,
    targets: np.ndarray | tf.Tensor,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
    shuffle_buffer: int = 100000,
) -> tf.data.Dataset:
    """(token ids, per-example targets) -> padded batches of (int32 ids, targets).

    With `static_shapes` every batch is `(batch_size, max_length)` and the
    remainder is dropped (TPU / XLA); otherwise batches are bucketed by
    length so padding stays small.
    """
    dataset = ragged_rows(ids, targets)
    if shuffle:
        dataset = dataset.shuffle(
            min(shuffle_buffer, int(ids.nrows())), seed=seed, reshuffle_each_iteration=True
        )
    if static_shapes:
        dataset = dataset.padded_batch(
            batch_size, padded_shapes=([max_length], []), drop_remainder=True
        )
    else:
        boundaries = bucket_boundaries(max_length)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda x, y: tf.shape(x)[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=([None], []),
        )
    return dataset.prefetch(2).with_options(pipeline_options())


def padding_fraction(dataset: tf.data.Dataset) -> float:
    """Fraction of token positions in `dataset`'s batches that are padding (id 0).

    Counts every id tensor of a batch's inputs (a tensor, or a dict / tuple of
    them, as translation's source and target ids).
    """
    padded = real = 0
    for batch in dataset:
        for ids in tf.nest.flatten(batch[0]):
            padded += int(tf.size(ids))
            real += int(tf.math.count_nonzero(ids))
    return 1.0 - real / padded if padded else 0.0


def batched_pairs(
    source_ids: tf.RaggedTensor,
    target_ids: tf.RaggedTensor,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    seed: int,
    static_shapes: bool = False,
    shuffle_buffer: int = 100000,
) -> tf.data.Dataset:
    """Aligned (source, target) id sequences -> batches for teacher forcing.

    Each target row holds `[BOS] ... [EOS]`; a batch is
    `({"source_ids": (batch, S), "target_ids": (batch, T)}, decoder_target (batch, T))`
    with the decoder input and target the target row shifted by one. Batches
    are bucketed by the longer side of each pair (or padded to `max_length`
    with `static_shapes`).
    """
    dataset = ragged_rows(source_ids, target_ids)
    if shuffle:
        dataset = dataset.shuffle(
            min(shuffle_buffer, int(source_ids.nrows())), seed=seed, reshuffle_each_iteration=True
        )
    if static_shapes:
        dataset = dataset.padded_batch(
            batch_size, padded_shapes=([max_length], [max_length + 1]), drop_remainder=True
        )
    else:
        boundaries = bucket_boundaries(max_length)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=([None], [None]),
        )
    dataset = dataset.map(lambda s, t: ({"source_ids": s, "target_ids": t[:, :-1]}, t[:, 1:]))
    return dataset.prefetch(2).with_options(pipeline_options())
