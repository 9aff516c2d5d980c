"""A run's per-epoch history, read back from the TensorBoard logs that training writes.

`fit`'s TensorBoard callback writes `logs/train/` and `logs/validation/`
event files holding one `epoch_<metric>` scalar per epoch (the step is the
epoch index). A resumed run adds event files beside the old ones; for an epoch
written twice (resumed mid-epoch), the value written last wins. `--restart`
clears `logs/` with the rest of the run.

The files are TFRecord files of `Event` protos, read here with the protobuf
classes that the `tensorboard` dependency ships: no TensorFlow import, so
`textrnn plot` starts fast.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textrnn.errors import RunDirError
from textrnn.training.run_dir import LOGS_DIR, run_task

SPLITS = ("train", "validation")  # the TensorBoard callback's sub-directories
EPOCH_PREFIX = "epoch_"
NOT_PLOTTED = ("learning_rate",)  # logged per epoch too, but not a measure of the model


@dataclass(frozen=True)
class RunHistory:
    """One run's metrics per epoch: `values[split][metric][epoch] = value` (epochs from 1)."""

    run_dir: Path
    task: str
    values: dict[str, dict[str, dict[int, float]]]

    def metrics(self) -> list[str]:
        """The metrics logged in any split, `loss` first, without the learning rate."""
        names = {name for split in self.values.values() for name in split}
        names -= set(NOT_PLOTTED)
        return sorted(names, key=lambda name: (name != "loss", name))

    def series(self, split: str, metric: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one metric in one split, in epoch order; empty if not logged."""
        points = sorted(self.values.get(split, {}).get(metric, {}).items())
        return [epoch for epoch, _ in points], [value for _, value in points]

    @property
    def epochs(self) -> int:
        return max(
            (max(by_epoch) for split in self.values.values() for by_epoch in split.values()),
            default=0,
        )


def read_history(run_dir: str | os.PathLike) -> RunHistory:
    """The per-epoch history of `run_dir`; `RunDirError` if it is not a trained textrnn run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir} (--run-dir)")
    task = run_task(run_dir)  # a foreign or empty directory fails here, naming config.json
    values: dict[str, dict[str, dict[int, float]]] = {}
    for split in SPLITS:
        latest: dict[tuple[str, int], tuple[float, float]] = {}  # (metric, epoch) -> (time, value)
        for path in sorted((run_dir / LOGS_DIR / split).glob("events.out.tfevents.*")):
            for wall_time, step, tag, value in _scalars(path):
                if not tag.startswith(EPOCH_PREFIX) or not np.isfinite(value):
                    continue
                key = (tag.removeprefix(EPOCH_PREFIX), step + 1)
                if key not in latest or wall_time >= latest[key][0]:
                    latest[key] = (wall_time, value)
        for (metric, epoch), (_, value) in latest.items():
            values.setdefault(split, {}).setdefault(metric, {})[epoch] = value
    if not any(metric != "learning_rate" for split in values.values() for metric in split):
        raise RunDirError(
            f"{run_dir}: no training history (no epoch summaries under {LOGS_DIR}/); "
            "train it for at least one epoch first"
        )
    return RunHistory(run_dir, task, values)


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file: length (u64), its CRC, data, the data's CRC.

    A file cut short (training killed while it wrote) ends at its last whole record.
    """
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return
            yield data


def _scalars(path: Path) -> Iterator[tuple[float, int, str, float]]:
    """(wall time, step, tag, value) of every scalar summary in one event file."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    for record in _records(path):
        try:
            event = event_pb2.Event.FromString(record)
        except DecodeError:
            return  # a damaged record: what came before it still counts
        for value in event.summary.value:
            number = _scalar_value(value)
            if number is not None:
                yield event.wall_time, int(event.step), value.tag, number


# TensorFlow's DataType enum values for the scalar types summaries hold.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


def _scalar_value(value) -> float | None:
    """A summary value's number: TF2's tensor summaries, or TF1's `simple_value`."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor" or value.tensor.tensor_shape.dim:
        return None
    tensor = value.tensor
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        return None
    if tensor.tensor_content:
        return float(np.frombuffer(tensor.tensor_content, dtype=dtype)[0])
    for field in ("float_val", "double_val", "int_val", "int64_val"):
        numbers = getattr(tensor, field)
        if numbers:
            return float(numbers[0])
    return None
