"""Training shared by every task: strategy, compile, fit, resume, checkpoints.

`train(task, config, run_dir)` drives any task module (see DESIGN.md "A task
module"): it prepares the run directory, builds data and tokenizer through
`task.load_datasets`, builds and compiles the model inside
`strategy.scope()`, fits with the standard callbacks and leaves in the run
directory everything that evaluation, prediction and export need.

Run directory layout:

    config.json           resolved configuration
    tokenizer.json        tokenizer settings        vocab.txt  vocabulary
    labels.json           (classification) label values and names
    model.weights.h5      the final (best) weights, written atomically
    state.json            epochs completed, best validation metric
    backup/               BackupAndRestore state (resume after a crash)
    checkpoints/          best.weights.h5, last.weights.h5
    logs/                 TensorBoard
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from textrnn import config as config_lib
from textrnn.config import TrainingConfig
from textrnn.errors import ConfigError, RunDirError, UserError
from textrnn.fileio import atomic_path, atomic_write_text, ensure_writable_directory

logger = logging.getLogger(__name__)

# Keras warns about both on every run; neither is actionable for textrnn users.
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
RUN_ENTRIES = (
    CONFIG_FILE, STATE_FILE, WEIGHTS_FILE, "tokenizer.json", "vocab.txt", "labels.json",
    "backup", "checkpoints", "logs", "source_vocab.txt", "source_tokenizer.json",
    "target_vocab.txt", "target_tokenizer.json", "source", "target",
)
# Sections whose change makes old weights meaningless; training.* may change on resume.
RESUME_SECTIONS = ("task", "data", "tokenizer", "model")


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


# ----------------------------------------------------------------------------- strategy


def choose_strategy(name: str = "auto", tpu: str = "") -> tf.distribute.Strategy:
    """`auto`: a TPU if a resolver finds one, MirroredStrategy on >1 GPU, else the default."""
    if name == "tpu" or (name == "auto" and (tpu or os.environ.get("TPU_NAME"))):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            if name == "tpu":
                raise UserError(f"no TPU found (--tpu {tpu or '<unset>'}): {error}") from None
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy multiworker needs TF_CONFIG (see README, 'Scaling out')")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make CPU kernels deterministic."""
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - old TF
        pass


def set_precision(policy: str) -> None:
    """Set the Keras dtype policy; output layers stay float32 (`dtype="float32"`)."""
    keras.mixed_precision.set_global_policy(policy or "float32")


# ----------------------------------------------------------------------------- optimizer


def make_optimizer(training: TrainingConfig, total_steps: int | None = None) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule and gradient clipping."""
    learning_rate: Any = training.learning_rate
    decay_steps = max(1, (total_steps or 1000) - training.warmup_steps)
    if training.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if training.warmup_steps else training.learning_rate,
            decay_steps,
            alpha=0.05,
            warmup_target=training.learning_rate if training.warmup_steps else None,
            warmup_steps=training.warmup_steps,
        )
    elif training.lr_schedule == "linear":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            training.learning_rate, decay_steps, end_learning_rate=training.learning_rate * 0.05
        )
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if training.clipnorm:
        kwargs["clipnorm"] = training.clipnorm
    if training.ema:
        kwargs.update(use_ema=True, ema_momentum=training.ema)
    if training.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=training.weight_decay, **kwargs)
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    return keras.optimizers.SGD(momentum=0.9, **kwargs)


def jit_compile_flag(training: TrainingConfig) -> bool | str:
    return {"auto": "auto", "true": True, "false": False}[training.jit_compile]


# ----------------------------------------------------------------------------- run directory


def save_config(run_dir: Path, config: Any) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config_lib.to_dict(config), indent=2) + "\n")


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: missing {path.name}; is this a textrnn run directory?") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path}: corrupt {what} ({error}); retrain with --restart") from None


def load_run_config(run_dir: str | os.PathLike, config_class: type) -> Any:
    """The resolved config saved by `train`, as `config_class`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir} (--run-dir)")
    values = read_json(run_dir / CONFIG_FILE, "config")
    try:
        return config_lib.from_dict(config_class, values)
    except ConfigError as error:
        raise RunDirError(f"{run_dir / CONFIG_FILE}: {error}") from None


def clear_run_dir(run_dir: Path) -> None:
    """Delete what `train` wrote (and nothing else: --run-dir may be shared)."""
    for name in RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def prepare_run_dir(run_dir: str | os.PathLike, config: Any, restart: bool) -> tuple[Path, bool]:
    """Make `run_dir` ready; return (path, resuming)."""
    run_dir = ensure_writable_directory(run_dir)
    if restart:
        clear_run_dir(run_dir)
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        return run_dir, False
    saved = read_json(saved_path, "config")
    current = config_lib.to_dict(config)
    changed = [
        f"{section}" for section in RESUME_SECTIONS if saved.get(section) != current.get(section)
    ]
    if changed:
        raise RunDirError(
            f"{run_dir} holds a run with a different [{', '.join(changed)}] configuration; "
            "pass --restart to start over or choose another --run-dir"
        )
    return run_dir, True


def write_state(run_dir: Path, **values: Any) -> None:
    path = run_dir / STATE_FILE
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(values)
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def load_weights(model: keras.Model, run_dir: str | os.PathLike) -> Path:
    """Load the run's final weights, falling back to its checkpoints if those are damaged."""
    run_dir = Path(run_dir)
    candidates = [
        run_dir / WEIGHTS_FILE,
        run_dir / "checkpoints" / "best.weights.h5",
        run_dir / "checkpoints" / "last.weights.h5",
    ]
    failures = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            model.load_weights(path)
        except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
            failures.append(f"{path.name}: {type(error).__name__}")
            logger.warning("%s is damaged (%s); trying the previous checkpoint", path, error)
            continue
        if failures:
            logger.warning("loaded %s instead of the damaged %s", path, ", ".join(failures))
        return path
    if failures:
        raise RunDirError(f"{run_dir}: every weights file is damaged ({'; '.join(failures)}); retrain with --restart")
    raise RunDirError(f"{run_dir}: no trained weights ({WEIGHTS_FILE}); run `train` first")


# ----------------------------------------------------------------------------- callbacks


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first NaN / inf loss and remember where, for a clear error."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.failed_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """One line per epoch with every metric, for logs that are not terminals."""

    def __init__(self, echo: Callable[[str], None], total_epochs: int) -> None:
        super().__init__()
        self.echo, self.total_epochs, self.started = echo, total_epochs, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate")
        self.echo(f"epoch {epoch + 1}/{self.total_epochs} ({time.perf_counter() - self.started:.1f} s): {metrics}")


# ----------------------------------------------------------------------------- train


def train(
    task: ModuleType,
    config: Any,
    run_dir: str | os.PathLike,
    restart: bool = False,
    echo: Callable[[str], None] = print,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train `task` (a task module) with `config`; return the final validation metrics."""
    training: TrainingConfig = config.training
    run_dir, resuming = prepare_run_dir(run_dir, config, restart)
    set_seed(training.seed)
    set_precision(training.mixed_precision)
    strategy = choose_strategy(training.strategy, training.tpu)
    replicas = strategy.num_replicas_in_sync
    if training.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {training.batch_size} is not divisible by the {replicas} replicas"
        )

    data: TaskData = task.load_datasets(config, run_dir)
    save_config(run_dir, config)
    for line in data.report:
        echo(line)
    echo(
        f"strategy: {type(strategy).__name__} with {replicas} replica(s); global batch "
        f"{training.batch_size}, {training.batch_size // replicas} per replica"
    )
    total_steps = (data.steps_per_epoch or 100) * training.epochs
    with strategy.scope():
        model = task.build_model(config, data.tokenizer, total_steps=total_steps, **data.model_arguments)

    state_path = run_dir / STATE_FILE
    if resuming:
        done = json.loads(state_path.read_text()).get("epochs_completed", 0) if state_path.exists() else 0
        backup = run_dir / "backup" / "training_metadata.json"
        if backup.exists():
            meta = json.loads(backup.read_text())
            echo(f"resuming {run_dir}: from epoch {meta.get('epoch', 0)}, step {meta.get('batch', 0)}")
        if done >= training.epochs and (run_dir / WEIGHTS_FILE).exists():
            echo(
                f"{run_dir} already completed {done} epoch(s); nothing to do "
                "(raise --epochs to continue, or --restart to start over)"
            )
            return json.loads(state_path.read_text()).get("metrics", {})

    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    nan_guard = NaNGuard()
    callbacks: list[keras.callbacks.Callback] = [
        nan_guard,
        keras.callbacks.BackupAndRestore(
            str(run_dir / "backup"),
            save_freq=training.backup_every_steps or "epoch",
            delete_checkpoint=False,
            double_checkpoint=True,
        ),
        # With EMA, validation and the checkpoints below see the averaged weights
        # (BackupAndRestore, above, keeps the raw ones plus the optimizer's averages).
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if training.ema else []),
        keras.callbacks.ModelCheckpoint(
            str(checkpoints / "best.weights.h5"),
            monitor=data.monitor,
            mode=data.monitor_mode,
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.ModelCheckpoint(str(checkpoints / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        EpochLog(echo, training.epochs),
    ]
    callbacks[1:1] = data.callbacks  # before BackupAndRestore and the checkpoints
    if training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=data.monitor, mode=data.monitor_mode, patience=training.early_stopping_patience
            )
        )
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 0
    started = time.perf_counter()
    history = model.fit(
        data.train,
        validation_data=data.valid,
        epochs=training.epochs,
        callbacks=callbacks,
        class_weight=data.class_weight,
        shuffle=False,  # the pipeline shuffles
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    if nan_guard.failed_at:
        epoch, step = nan_guard.failed_at
        raise UserError(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step}; "
            "lower --learning-rate or set training.clipnorm in the config"
        )
    best = checkpoints / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        model.save_weights(tmp)
    metrics = {}
    if history.history:
        values = history.history.get(data.monitor)
        index = int(np.argmin(values) if data.monitor_mode == "min" else np.argmax(values)) if values else -1
        metrics = {k: float(v[index]) for k, v in history.history.items() if k.startswith("val_")}
    epochs_done = (json.loads(state_path.read_text()).get("epochs_completed", 0) if state_path.exists() else 0)
    epochs_done = max(epochs_done, len(history.epoch) and history.epoch[-1] + 1)
    write_state(run_dir, epochs_completed=epochs_done, metrics=metrics, train_seconds=round(seconds, 1))
    echo(f"trained {len(history.epoch)} epoch(s) in {seconds:.1f} s; best {data.monitor}: "
         f"{metrics.get(data.monitor, float('nan')):.4f}; weights in {run_dir / WEIGHTS_FILE}")
    return metrics
