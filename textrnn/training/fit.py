"""`train(task, config, run_dir)`: the one training loop every task goes through.

It prepares the run directory (`textrnn.training.run_dir`), builds data and
tokenizers through `task.load_datasets`, builds and compiles the model inside
`strategy.scope()`, fits with the standard callbacks (step backups for resume,
best / last checkpoints, NaN guard, TensorBoard, early stopping) and leaves in
the run directory everything that evaluation, prediction and export need.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from textrnn import config as config_lib
from textrnn.config import TrainingConfig
from textrnn.errors import ConfigError, UserError
from textrnn.fileio import atomic_path
from textrnn.tasks import Task
from textrnn.training import backup as backup_lib
from textrnn.training.callbacks import AtomicModelCheckpoint, EpochLog, NaNGuard
from textrnn.training.layer_groups import GradualUnfreezing, install_layer_rates
from textrnn.training.optimizer import jit_compile_flag
from textrnn.training.run_dir import (
    BACKUP_DIR,
    CHECKPOINTS_DIR,
    LOGS_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    clear_run_dir,
    prepare_run_dir,
    save_config,
    write_state,
)
from textrnn.training.schedules import TimeBudget
from textrnn.training.strategy import choose_strategy, resolve_precision, set_precision, set_seed

# Keras warns about both on every run; neither is actionable for textrnn users.
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

# With a time budget the budget ends the run, not the number of epochs.
BUDGET_EPOCHS = 1_000_000


def planned_epochs(training: TrainingConfig) -> int:
    """The epochs `fit` is asked for: `training.epochs`, or unbounded under a time budget."""
    return BUDGET_EPOCHS if training.time_budget_minutes else training.epochs


@dataclass
class TaskData:
    """What a task's `load_datasets` hands to training."""

    train: tf.data.Dataset
    valid: tf.data.Dataset
    tokenizer: Any
    model_arguments: dict[str, Any] = field(default_factory=dict)  # extra build_model kwargs
    steps_per_epoch: int | None = None
    class_weight: dict[int, float] | None = None
    monitor: str = "val_loss"
    monitor_mode: str = "min"
    report: list[str] = field(default_factory=list)  # lines to print before training
    callbacks: list[Any] = field(default_factory=list)  # task-specific Keras callbacks


def build_for_fit(
    model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset
) -> None:
    """Create the metric, loss and optimizer variables now, once, from one plain batch.

    Keras builds them at the start of every `fit` under a strategy by drawing a
    batch from a fresh iterator: that shifts a seeded, reshuffling pipeline by
    one iteration per `fit` call (a resumed run calls `fit` twice), and under
    MultiWorkerMirroredStrategy it fails (keras 3.15 reduces the nested int
    batch with MEAN). Building here and switching that step off keeps the data
    order a function of the epoch alone.
    """
    if not hasattr(model, "_symbolic_build"):  # pragma: no cover - other Keras versions
        return
    batch = next(iter(dataset.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    object.__setattr__(model, "_maybe_symbolic_build", lambda iterator=None, data_batch=None: None)


def train(
    task: Task,
    config: Any,
    run_dir: str | os.PathLike,
    restart: bool = False,
    echo: Callable[[str], None] = print,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train `task` (a `tasks.Task`) with `config`; return the final validation metrics."""
    training: TrainingConfig = config.training
    created = not Path(run_dir).exists()
    run_dir, resuming = prepare_run_dir(run_dir, config, restart, task.run_files)
    # A new run that fails before its first step (bad data, a bad setting) leaves nothing
    # behind: a later run must not take up its labels or vocabulary.
    fresh = None if resuming else (created, set(os.listdir(run_dir)))
    points, problems = backup_lib.read_points(run_dir / BACKUP_DIR) if resuming else ([], [])
    if points:
        echo(f"resuming {run_dir}: resumed from {points[0].describe()}")
    for problem in problems:
        echo(
            f"warning: {problem}"
            + (f"; using the previous backup ({points[0].describe()})" if points else "")
        )
    set_seed(training.seed, deterministic=jit_compile_flag(training) is not True)
    with discarded_on_failure(run_dir, task, fresh):  # e.g. --tpu without a TPU
        strategy = choose_strategy(
            training.strategy, training.tpu, training.worker_hosts, training.task_index
        )
    if isinstance(strategy, tf.distribute.TPUStrategy) and not training.static_shapes:
        # TPUs need fixed shapes.
        config = config_lib.replace(config, **{"training.static_shapes": True})
        training = config.training
    precision = resolve_precision(training.mixed_precision, strategy)
    previous_policy = keras.mixed_precision.global_policy()
    set_precision(precision)
    try:
        with discarded_on_failure(run_dir, task, fresh):
            data, model, backup = _set_up(task, config, run_dir, resuming, strategy, echo)
        if data is None:
            return model  # resumed a run that had already finished: its metrics
        return _fit(config, run_dir, strategy, points, echo, verbose, data, model, backup)
    finally:
        # Later builds (export) are float32.
        keras.mixed_precision.set_global_policy(previous_policy)


def discard_new_entries(run_dir: Path, task: Task, created: bool, before: set[str]) -> None:
    """Delete the run entries that were not in `run_dir` before (`before`), and the
    directory itself if `created` and now empty: what a new run wrote before it failed."""
    with contextlib.suppress(OSError):  # runs while the failure propagates: never mask it
        clear_run_dir(run_dir, task.run_files, keep=before)
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty


@contextlib.contextmanager
def discarded_on_failure(
    run_dir: Path, task: Task, fresh: tuple[bool, set[str]] | None
) -> Iterator[None]:
    """If the block fails, undo a new run (`fresh`: created, entries before; None: resuming)."""
    try:
        yield
    except BaseException:
        if fresh is not None:
            discard_new_entries(run_dir, task, *fresh)
        raise


def _set_up(
    task: Task,
    config: Any,
    run_dir: Path,
    resuming: bool,
    strategy: tf.distribute.Strategy,
    echo: Callable[[str], None],
) -> tuple[TaskData | None, Any, backup_lib.TrainingBackup | None]:
    """Data, model and backup, ready to fit; (None, metrics, None) if the run is complete."""
    training: TrainingConfig = config.training
    replicas = strategy.num_replicas_in_sync
    if training.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {training.batch_size} (the global batch) is not divisible by the "
            f"{replicas} replicas of {type(strategy).__name__}; use a multiple of {replicas}"
        )
    data: TaskData = task.load_datasets(config, run_dir)
    save_config(run_dir, config)
    for line in data.report:
        echo(line)
    precision = keras.mixed_precision.global_policy().name
    echo(
        f"strategy: {type(strategy).__name__} with {replicas} replica(s); global batch "
        f"{training.batch_size}, {training.batch_size // replicas} per replica"
        + (f"; precision {precision}" if training.mixed_precision else "")
    )
    total_steps = (data.steps_per_epoch or 100) * training.epochs
    with strategy.scope():
        model = task.build_model(
            config, data.tokenizer, total_steps=total_steps, **data.model_arguments
        )
    state = _read_state(run_dir)
    done = state.get("epochs_completed", 0)
    finished = state.get("time_budget_spent") or done >= planned_epochs(training)
    if resuming and finished and (run_dir / WEIGHTS_FILE).exists():
        echo(
            f"{run_dir} already completed {done} epoch(s); nothing to do "
            "(raise --epochs to continue, or --restart to start over)"
        )
        return None, state.get("metrics", {}), None
    backup = backup_lib.TrainingBackup(
        run_dir / BACKUP_DIR,
        training.backup_every_steps,
        monitor=data.monitor,
        mode=data.monitor_mode,
    )
    build_for_fit(model, strategy, data.train)
    with strategy.scope():
        layer_rates = install_layer_rates(model, training)
    if layer_rates is not None and training.gradual_unfreeze:
        stage_cycles = None
        if training.stage_lr_decay:
            stage_cycles = (
                training.learning_rate,
                training.stage_lr_decay,
                training.epochs,
                data.steps_per_epoch or 100,
            )
        data.callbacks.insert(0, GradualUnfreezing(layer_rates, echo, stage_cycles))
    return data, model, backup


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _restore_backup(
    strategy: tf.distribute.Strategy,
    points: list[backup_lib.BackupPoint],
    run_dir: Path,
    model: keras.Model,
    backup: backup_lib.TrainingBackup,
    echo: Callable[[str], None],
) -> backup_lib.BackupPoint | None:
    """The backup point every worker resumes from, loaded into `model` (None: from the start)."""
    first = points[0] if points else None
    points = backup_lib.agree_on_point(strategy, points)
    if points and points[0] != first:
        echo(f"workers agreed to resume from {points[0].describe()}")
    if not points:
        return None
    with strategy.scope():
        point = backup_lib.restore(model, run_dir / BACKUP_DIR, points, echo)
    if point is None:
        echo("warning: no backup loads; training from the start of the run")
    else:
        backup.resume_from(point)
    return point


def _callbacks(
    training: TrainingConfig,
    run_dir: Path,
    data: TaskData,
    backup: backup_lib.TrainingBackup,
    point: backup_lib.BackupPoint | None,
    nan_guard: NaNGuard,
    echo: Callable[[str], None],
) -> list[keras.callbacks.Callback]:
    checkpoints = run_dir / CHECKPOINTS_DIR
    checkpoints.mkdir(exist_ok=True)
    best_checkpoint = AtomicModelCheckpoint(
        str(checkpoints / "best.weights.h5"),
        monitor=data.monitor,
        mode=data.monitor_mode,
        save_best_only=True,
        save_weights_only=True,
    )
    if point is not None and point.best is not None:
        best_checkpoint.best = point.best
    callbacks: list[keras.callbacks.Callback] = [
        nan_guard,
        *data.callbacks,  # before the backup and the checkpoints
        backup,
        # With EMA, validation and the checkpoints below see the averaged weights
        # (the backup, above, keeps the raw ones plus the optimizer's averages).
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if training.ema else []),
        best_checkpoint,
        AtomicModelCheckpoint(str(checkpoints / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.TensorBoard(str(run_dir / LOGS_DIR), write_graph=False, profile_batch=0),
        EpochLog(echo, None if training.time_budget_minutes else training.epochs),
    ]
    if training.time_budget_minutes:
        callbacks.insert(
            0,
            TimeBudget(
                training.time_budget_minutes * 60.0,
                training.learning_rate,
                training.lr_schedule,
                training.warmup_steps,
            ),
        )
    if training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=data.monitor,
                mode=data.monitor_mode,
                patience=training.early_stopping_patience,
            )
        )
    return callbacks


def _phases(
    train: tf.data.Dataset, point: backup_lib.BackupPoint | None, epochs: int
) -> list[tuple[tf.data.Dataset, int, int]]:
    """(dataset, initial epoch, end epoch) per `fit` call.

    A run resumed mid-epoch first finishes that epoch on the batches it had not
    reached (the shuffles replayed, the consumed batches skipped), then goes on.
    """
    first_epoch = point.epoch if point else 0
    phases = []
    if point is not None:
        backup_lib.advance_epochs(train, point.epoch)
        if point.step:
            phases.append((train.skip(point.step), first_epoch, first_epoch + 1))
            first_epoch += 1
    if first_epoch < epochs:
        phases.append((train, first_epoch, epochs))
    return phases


def _fit(
    config: Any,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
    points: list[backup_lib.BackupPoint],
    echo: Callable[[str], None],
    verbose: int | str,
    data: TaskData,
    model: keras.Model,
    backup: backup_lib.TrainingBackup,
) -> dict[str, Any]:
    training: TrainingConfig = config.training
    point = _restore_backup(strategy, points, run_dir, model, backup, echo)
    nan_guard = NaNGuard()
    callbacks = _callbacks(training, run_dir, data, backup, point, nan_guard, echo)
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 0
    started = time.perf_counter()
    history: dict[str, list[float]] = {}
    epochs_run: list[int] = []
    for dataset, initial_epoch, epochs in _phases(data.train, point, planned_epochs(training)):
        if nan_guard.failed_at or getattr(model, "stop_training", False):
            break
        result = model.fit(
            dataset,
            validation_data=data.valid,
            initial_epoch=initial_epoch,
            epochs=epochs,
            callbacks=callbacks,
            class_weight=data.class_weight,
            shuffle=False,  # the pipeline shuffles
            verbose=verbose,
        )
        epochs_run += result.epoch
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    seconds = time.perf_counter() - started
    if nan_guard.failed_at:
        epoch, step = nan_guard.failed_at
        raise UserError(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step}; "
            "lower --learning-rate or set training.clipnorm in the config"
        )
    _keep_best_weights(model, run_dir, echo)
    metrics = _best_metrics(history, data.monitor, data.monitor_mode)
    epochs_done = max(
        _read_state(run_dir).get("epochs_completed", 0), len(epochs_run) and epochs_run[-1] + 1
    )
    budget = next((c for c in callbacks if isinstance(c, TimeBudget)), None)
    write_state(
        run_dir,
        epochs_completed=epochs_done,
        metrics=metrics,
        train_seconds=round(seconds, 1),
        **({"time_budget_spent": budget.spent} if budget else {}),
    )
    echo(
        f"trained {len(epochs_run)} epoch(s) in {seconds:.1f} s; best {data.monitor}: "
        f"{metrics.get(data.monitor, float('nan')):.4f}; weights in {run_dir / WEIGHTS_FILE}"
    )
    return metrics


def _keep_best_weights(model: keras.Model, run_dir: Path, echo: Callable[[str], None]) -> None:
    """Write the best checkpoint's weights (the last ones if it is missing or damaged)."""
    best = run_dir / CHECKPOINTS_DIR / "best.weights.h5"
    if best.exists():
        try:
            model.load_weights(best)
        except Exception as error:  # noqa: BLE001 - a damaged file: keep the weights in memory
            echo(
                f"warning: {best} does not load ({type(error).__name__}); keeping the last weights"
            )
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        model.save_weights(tmp)


def _best_metrics(history: dict[str, list[float]], monitor: str, mode: str) -> dict[str, float]:
    """The validation metrics of the epoch that was best on `monitor`."""
    if not history:
        return {}
    values = history.get(monitor)
    index = int(np.argmin(values) if mode == "min" else np.argmax(values)) if values else -1
    return {k: float(v[index]) for k, v in history.items() if k.startswith("val_")}
