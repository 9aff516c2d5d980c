"""Step-level backup and resume: a run killed at any point restarts where it was.

Keras 3's `BackupAndRestore` saves every N steps but, on restart, only
restores the epoch: the steps already done in that epoch are trained again
(on a data order the seeded pipeline no longer reproduces). `TrainingBackup`
restores the step too:

- every `every_steps` training steps and at every epoch end it saves the
  model's weights with the optimizer's state (`model.save_weights` writes
  both) to `backup/ckpt-<global step>-e<epoch>s<step>.weights.h5` through a
  temporary file, then rewrites `backup/backup.json` atomically. The index
  names the latest and the previous backup, each with its epoch, step
  within the epoch, global step, size and SHA-256; older files are deleted.
  A crash at any moment leaves an index that names complete files.
- on restart `choose_point` verifies the latest backup (size, checksum,
  then loading it); a damaged one is reported and the previous one used.
- `train` then replays the seeded pipeline's shuffles up to the interrupted
  epoch (`advance_epochs`) and skips the batches already consumed in it, so
  the resumed run sees the very batches an uninterrupted run would have.

With several workers (MultiWorkerMirroredStrategy) every worker keeps its
own backups in its own run directory; `agree_on_point` makes them restore
the newest global step that every worker still has.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from textrnn.fileio import atomic_path, atomic_write_text
from textrnn.training.weights import load_weights_file

logger = logging.getLogger(__name__)

INDEX_FILE = "backup.json"


@dataclass(frozen=True)
class BackupPoint:
    """One saved training state: `step` steps of epoch `epoch` (0-based) are done."""

    epoch: int
    step: int
    global_step: int
    file: str
    size: int
    sha256: str
    best: float | None = None  # best validation metric so far (restored into ModelCheckpoint)

    def describe(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step} (global step {self.global_step})"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_points(directory: Path) -> tuple[list[BackupPoint], list[str]]:
    """Backups named by the index, newest first, that pass the size and checksum checks.

    Returns `(points, problems)`; each problem is one line saying what is damaged.
    """
    index_path = directory / INDEX_FILE
    if not index_path.exists():
        return [], []
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        entries = [BackupPoint(**index[key]) for key in ("latest", "previous") if index.get(key)]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
        return [], [f"{index_path} is damaged ({type(error).__name__}); no backup used"]
    points, problems = [], []
    for point in entries:
        path = directory / point.file
        if not path.is_file():
            problems.append(f"backup {path.name} ({point.describe()}) is missing")
        elif path.stat().st_size != point.size:
            problems.append(
                f"backup {path.name} ({point.describe()}) is truncated or damaged "
                f"({path.stat().st_size} of {point.size} bytes)"
            )
        elif file_digest(path) != point.sha256:
            problems.append(
                f"backup {path.name} ({point.describe()}) is damaged (checksum mismatch)"
            )
        else:
            points.append(point)
    return points, problems


def load_point(model: keras.Model, directory: Path, point: BackupPoint) -> None:
    """Load weights and optimizer state (the optimizer is built first so its variables exist)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    load_weights_file(model, directory / point.file)


def restore(
    model: keras.Model, directory: Path, points: list[BackupPoint], echo: Callable[[str], None]
) -> BackupPoint | None:
    """Load the first point that loads; report the ones that do not."""
    for number, point in enumerate(points):
        try:
            load_point(model, directory, point)
        except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
            echo(
                f"warning: backup {point.file} ({point.describe()}) does not load "
                f"({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); trying the previous one"
            )
            continue
        if number:
            echo(f"resumed from the previous backup instead: {point.describe()}")
        return point
    return None


def agree_on_point(
    strategy: tf.distribute.Strategy, points: list[BackupPoint]
) -> list[BackupPoint]:
    """With several workers, keep only the newest backup every worker holds (same global step).

    Workers save at the same steps, but one killed mid-save may be one backup
    behind the others; each keeps two, so a common step normally exists. The
    same step can be saved as "last step of epoch E" by one worker and "epoch
    E + 1, step 0" by another (killed during validation): both hold the same
    weights, and every worker takes the later reading so all run the same epochs.
    """
    workers = getattr(strategy.extended, "_num_workers", 1)
    if workers <= 1:
        return points
    mine = [[p.global_step, p.epoch] for p in points[:2]] + [[-1, -1]] * (2 - len(points[:2]))
    local = tf.constant([sum(mine, [])], tf.int64)  # (1, 4): step, epoch, step, epoch
    per_replica = strategy.experimental_distribute_values_from_function(lambda context: local)
    gathered = (
        strategy.gather(per_replica, axis=0).numpy().reshape(-1, 2, 2)
    )  # (replicas, 2, [step, epoch])
    common = set(gathered[0, :, 0].tolist())
    for row in gathered[1:]:
        common &= set(row[:, 0].tolist())
    common.discard(-1)
    if not common:
        return []
    step = max(common)
    epoch = int(max(e for s, e in gathered.reshape(-1, 2).tolist() if s == step))
    chosen = [p for p in points if p.global_step == step][:1]
    return [dataclasses.replace(p, epoch=epoch, step=0) if p.epoch < epoch else p for p in chosen]


class TrainingBackup(keras.callbacks.Callback):
    """Save the training state every `every_steps` steps and at every epoch end.

    Args:
        directory: where backups and their index live (`<run dir>/backup`).
        every_steps: save frequency in training steps; 0 saves at epoch ends only.
        monitor: the validation metric whose best value is remembered across restarts.
        mode: "min" or "max" for `monitor`.

    Example:

    ```python
    backup = TrainingBackup(run_dir / "backup", every_steps=50)
    model.fit(dataset, epochs=3, callbacks=[backup])
    ```
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        every_steps: int = 0,
        monitor: str = "val_loss",
        mode: str = "min",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.directory = Path(directory)
        self.every_steps = every_steps
        self.monitor = monitor
        self.mode = mode
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.skip_next_epoch = 0  # steps already done in the epoch fit is about to start
        self.best: float | None = None
        self.saved: BackupPoint | None = None

    def resume_from(self, point: BackupPoint) -> None:
        self.epoch, self.step, self.global_step = point.epoch, point.step, point.global_step
        self.skip_next_epoch = point.step
        self.best = point.best
        self.saved = point

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.step, self.skip_next_epoch = self.skip_next_epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.global_step += 1
        loss = (logs or {}).get("loss")
        if self.every_steps and self.global_step % self.every_steps == 0 and _finite(loss):
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is not None and _finite(value):
            better = self.best is None or (
                value < self.best if self.mode == "min" else value > self.best
            )
            self.best = float(value) if better else self.best
        if not _finite(logs.get("loss")):
            return  # a diverged run keeps its last good backup
        self.epoch, self.step = epoch + 1, 0
        self.save()

    def save(self) -> BackupPoint:
        """Write the weights, then the index naming them and the previous backup; prune the rest."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{self.global_step:09d}-e{self.epoch}s{self.step}.weights.h5"
        path = self.directory / name
        with atomic_path(path) as tmp:
            self.model.save_weights(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        point = BackupPoint(
            self.epoch,
            self.step,
            self.global_step,
            name,
            path.stat().st_size,
            file_digest(path),
            self.best,
        )
        previous = self.saved if self.saved and self.saved.file != name else None
        index = {"latest": asdict(point), "previous": asdict(previous) if previous else None}
        atomic_write_text(self.directory / INDEX_FILE, json.dumps(index, indent=2) + "\n")
        keep = {name, previous.file if previous else ""}
        for old in self.directory.glob("ckpt-*.weights.h5"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        self.saved = point
        return point


def _finite(value: Any) -> bool:
    try:
        return value is None or math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def advance_epochs(dataset: tf.data.Dataset, epochs: int) -> None:
    """Advance a seeded, reshuffling pipeline by `epochs` iterations without reading it.

    `shuffle(seed=..., reshuffle_each_iteration=True)` draws each iteration's
    order from a seed generator that advances when an iterator is created;
    creating (and dropping) `epochs` iterators puts a fresh process where the
    interrupted one was at the start of epoch `epochs`.
    """
    for _ in range(epochs):
        iter(dataset)
