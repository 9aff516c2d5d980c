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
    backup/               step-level backups + backup.json index (textrnn.backup: resume after a crash)
    checkpoints/          best.weights.h5, last.weights.h5
    logs/                 TensorBoard
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from textrnn import backup as backup_lib
from textrnn import config as config_lib
from textrnn import fast_rnn
from textrnn.config import TrainingConfig
from textrnn.errors import ConfigError, RunDirError, UserError
from textrnn.fileio import (
    atomic_path,
    atomic_write_text,
    ensure_writable_directory,
    remove_stale_temporaries,
)

logger = logging.getLogger(__name__)

# Keras warns about both on every run; neither is actionable for textrnn users.
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
RUN_ENTRIES = (
    CONFIG_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    "tokenizer.json",
    "vocab.txt",
    "labels.json",
    "backup",
    "checkpoints",
    "logs",
    "source_vocab.txt",
    "source_tokenizer.json",
    "target_vocab.txt",
    "target_tokenizer.json",
    "source",
    "target",
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


def split_cpu(devices: int) -> bool:
    """Split the CPU into `devices` logical devices (MirroredStrategy replicas on a CPU-only host).

    Only possible before TensorFlow initializes its runtime; returns whether it worked.
    `textrnn` does it at start-up when TEXTRNN_CPU_DEVICES is set.
    """
    cpus = tf.config.list_physical_devices("CPU")
    if len(tf.config.list_logical_devices("CPU")) >= devices:
        return True
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices
        )
    except RuntimeError:
        return False
    return True


def worker_tf_config(worker_hosts: str, task_index: int) -> str:
    """TF_CONFIG for worker `task_index` of `host:port,host:port,...` (MultiWorkerMirroredStrategy)."""
    hosts = [host.strip() for host in worker_hosts.split(",") if host.strip()]
    if not hosts or any(":" not in host for host in hosts):
        raise ConfigError(f"--worker-hosts must be host:port,host:port,..., got {worker_hosts!r}")
    if not 0 <= task_index < len(hosts):
        raise ConfigError(
            f"--task-index must be in [0, {len(hosts) - 1}] for {len(hosts)} worker(s), got {task_index}"
        )
    return json.dumps(
        {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task_index}}
    )


def choose_strategy(
    name: str = "auto", tpu: str = "", worker_hosts: str = "", task_index: int = 0
) -> tf.distribute.Strategy:
    """`auto`: a TPU if a resolver finds one, MirroredStrategy on >1 GPU, else the default.

    `mirrored` uses every local GPU, or every logical CPU device when there is
    no GPU (see `split_cpu`). `multiworker` reads TF_CONFIG, or builds it from
    `worker_hosts` / `task_index`. `tpu` connects through a TPUClusterResolver.
    """
    if name == "tpu" or (name == "auto" and (tpu or os.environ.get("TPU_NAME"))):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except Exception as error:  # noqa: BLE001 - resolvers raise ValueError, OpError, URLError...
            if name == "tpu":
                raise UserError(f"no TPU found (--tpu {tpu or '<unset>'}): {error}") from None
    if name == "multiworker":
        if worker_hosts:
            os.environ["TF_CONFIG"] = worker_tf_config(worker_hosts, task_index)
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "--strategy multiworker needs TF_CONFIG or --worker-hosts HOST:PORT,... --task-index N "
                "(see README, 'Scaling out')"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise UserError(f"TF_CONFIG is not valid JSON ({error})") from None
        patch_keras_multi_worker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1 and not gpus:
            logger.warning(
                "--strategy mirrored: one device only; set TEXTRNN_CPU_DEVICES=2 to split the CPU into replicas"
            )
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def patch_keras_multi_worker_reduce() -> None:
    """Work around keras 3.15 under MultiWorkerMirroredStrategy: it reduces scalar metrics with
    `strategy.reduce("MEAN", v, axis=0)`, which fails ("Invalid reduction dimension 0"); scalars
    are reduced with `axis=None` here, everything else as Keras does. Idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer.reduce_per_replica, "textrnn_patched", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def reduce(value):
                if not tf_trainer._is_per_replica_instance(value):
                    return value
                rank = strategy.experimental_local_results(value)[0].shape.rank
                return strategy.reduce("MEAN", value, axis=0 if rank else None)

            return tf.nest.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica.textrnn_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def is_chief() -> bool:
    """False on a non-chief worker of a multi-worker job (TF_CONFIG task index > 0)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except ValueError:
        return True
    return task.get("type", "worker") in ("chief", "worker") and (
        task.get("type") == "chief" or int(task.get("index", 0)) == 0
    )


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make CPU kernels deterministic.

    `deterministic=False` (XLA requested) turns op determinism off again:
    Keras silently drops `jit_compile=True` while it is on.
    """
    keras.utils.set_random_seed(seed)
    from tensorflow.python.framework import config as tf_config

    if deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def set_precision(policy: str) -> None:
    """Set the Keras dtype policy; output layers stay float32 (`dtype="float32"`).

    Must run before the model is built. Under `mixed_float16` `model.compile`
    wraps the optimizer in a `LossScaleOptimizer` (dynamic loss scaling).
    """
    keras.mixed_precision.set_global_policy(policy or "float32")


def resolve_precision(policy: str, strategy: tf.distribute.Strategy) -> str:
    """The policy to train with: as configured; on a TPU `mixed_bfloat16` unless set."""
    if not policy and isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if policy == "mixed_float16" and not tf.config.list_logical_devices("GPU"):
        logger.warning(
            "mixed_float16 without a GPU is slow; mixed_bfloat16 is the CPU / TPU choice"
        )
    return policy


# ----------------------------------------------------------------------------- optimizer


def make_optimizer(
    training: TrainingConfig, total_steps: int | None = None
) -> keras.optimizers.Optimizer:
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
    """`training.jit_compile`; `auto` with static shapes means XLA (the TPU path)."""
    if training.jit_compile == "auto" and training.static_shapes:
        return True
    return {"auto": "auto", "true": True, "false": False}[training.jit_compile]


# ----------------------------------------------------------------------------- run directory


def save_config(run_dir: Path, config: Any) -> None:
    atomic_write_text(
        run_dir / CONFIG_FILE, json.dumps(config_lib.to_dict(config), indent=2) + "\n"
    )


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(
            f"{path.parent}: missing {path.name}; is this a textrnn run directory?"
        ) from None
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


def clear_run_dir(run_dir: Path, keep: Iterable[str] = ()) -> None:
    """Delete what `train` wrote but the entries named in `keep` (and nothing else:
    --run-dir may be shared)."""
    keep = set(keep)
    for name in RUN_ENTRIES:
        path = run_dir / name
        if name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def prepare_run_dir(run_dir: str | os.PathLike, config: Any, restart: bool) -> tuple[Path, bool]:
    """Make `run_dir` ready; return (path, resuming)."""
    run_dir = ensure_writable_directory(run_dir)
    if restart:
        clear_run_dir(run_dir)
    for directory in (run_dir, *(run_dir / name for name in RUN_ENTRIES)):
        if directory.is_dir():
            remove_stale_temporaries(directory)  # left by a run killed mid-write
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
    failures, mismatches = [], []
    for path in candidates:
        if not path.exists():
            continue
        try:
            with warnings.catch_warnings():
                # Keras warns about each layer it cannot match before raising; the error says it.
                warnings.simplefilter("ignore")
                fast_rnn.load_weights_file(model, path)
        except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
            failures.append(f"{path.name}: {type(error).__name__}")
            # Keras: "... expected variable.shape=(32, 3), Received: value.shape=(32, 2) ..."
            shapes = re.search(
                r"variable\.shape=(\([^)]*\)).*?value\.shape=(\([^)]*\))", str(error)
            )
            mismatches.append(shapes)
            continue
        if failures:
            logger.warning("loaded %s instead of the damaged %s", path, ", ".join(failures))
        return path
    if failures and all(mismatches):
        model_shape, file_shape = mismatches[0].groups()
        raise RunDirError(
            f"{run_dir}: the weights do not fit the model that its config.json, labels and "
            f"vocabulary describe (a weight of shape {file_shape} where the model has "
            f"{model_shape}); was one of those files edited or replaced? Restore it, or retrain "
            "with --restart"
        )
    if failures:
        raise RunDirError(
            f"{run_dir}: every weights file is damaged ({'; '.join(failures)}); retrain with --restart"
        )
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


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` whose files appear whole or not at all (temporary file, then rename)."""

    def _save_model(self, epoch, batch, logs):
        model = self.model
        save_weights = model.save_weights

        def atomic_save_weights(filepath, overwrite=True, **kwargs):
            with atomic_path(filepath) as tmp:
                save_weights(tmp, overwrite=True, **kwargs)

        object.__setattr__(model, "save_weights", atomic_save_weights)
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            object.__delattr__(model, "save_weights")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch with every metric, for logs that are not terminals."""

    def __init__(self, echo: Callable[[str], None], total_epochs: int) -> None:
        super().__init__()
        self.echo, self.total_epochs, self.started = echo, total_epochs, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(
            f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate"
        )
        self.echo(
            f"epoch {epoch + 1}/{self.total_epochs} ({time.perf_counter() - self.started:.1f} s): {metrics}"
        )


# ----------------------------------------------------------------------------- train


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
    task: ModuleType,
    config: Any,
    run_dir: str | os.PathLike,
    restart: bool = False,
    echo: Callable[[str], None] = print,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train `task` (a task module) with `config`; return the final validation metrics."""
    training: TrainingConfig = config.training
    created = not Path(run_dir).exists()
    run_dir, resuming = prepare_run_dir(run_dir, config, restart)
    # A new run that fails before its first step (bad data, a bad setting) leaves nothing
    # behind: a later run must not take up its labels or vocabulary.
    fresh = None if resuming else (created, set(os.listdir(run_dir)))
    backup_dir = run_dir / "backup"
    points, problems = backup_lib.read_points(backup_dir) if resuming else ([], [])
    if points:
        echo(f"resuming {run_dir}: resumed from {points[0].describe()}")
    for problem in problems:
        echo(
            f"warning: {problem}"
            + (f"; using the previous backup ({points[0].describe()})" if points else "")
        )
    set_seed(training.seed, deterministic=jit_compile_flag(training) is not True)
    with discarded_on_failure(run_dir, fresh):  # e.g. --tpu without a TPU
        strategy = choose_strategy(
            training.strategy, training.tpu, training.worker_hosts, training.task_index
        )
    if isinstance(strategy, tf.distribute.TPUStrategy) and not training.static_shapes:
        config = config_lib.replace(
            config, **{"training.static_shapes": True}
        )  # TPUs need fixed shapes
        training = config.training
    precision = resolve_precision(training.mixed_precision, strategy)
    previous_policy = keras.mixed_precision.global_policy()
    set_precision(precision)
    try:
        return _train(task, config, run_dir, resuming, strategy, points, echo, verbose, fresh)
    finally:
        keras.mixed_precision.set_global_policy(
            previous_policy
        )  # later builds (export) are float32


def discard_new_entries(run_dir: Path, created: bool, before: set[str]) -> None:
    """Delete the run entries that were not in `run_dir` before (`before`), and the
    directory itself if `created` and now empty: what a new run wrote before it failed."""
    with contextlib.suppress(OSError):  # runs while the failure propagates: never mask it
        clear_run_dir(run_dir, keep=before)
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty


@contextlib.contextmanager
def discarded_on_failure(run_dir: Path, fresh: tuple[bool, set[str]] | None) -> Iterator[None]:
    """If the block fails, undo a new run (`fresh`: created, entries before; None: resuming)."""
    try:
        yield
    except BaseException:
        if fresh is not None:
            discard_new_entries(run_dir, *fresh)
        raise


def _train(
    task, config, run_dir: Path, resuming: bool, strategy, points, echo, verbose, fresh=None
) -> dict[str, Any]:
    """Train; `fresh` (created, entries before) for a new run: undone if setup fails."""
    with discarded_on_failure(run_dir, fresh):
        data, model, backup = _set_up(task, config, run_dir, resuming, strategy, echo)
    if data is None:
        return model  # resumed a run that had already finished: its metrics
    return _fit(config, run_dir, strategy, points, echo, verbose, data, model, backup)


def _set_up(task, config, run_dir: Path, resuming: bool, strategy, echo):
    """Data, model and backup, ready to fit; (None, metrics, None) if the run is complete."""
    training: TrainingConfig = config.training
    replicas = strategy.num_replicas_in_sync
    if training.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {training.batch_size} (the global batch) is not divisible by the {replicas} "
            f"replicas of {type(strategy).__name__}; use a multiple of {replicas}"
        )

    data: TaskData = task.load_datasets(config, run_dir)
    save_config(run_dir, config)
    for line in data.report:
        echo(line)
    echo(
        f"strategy: {type(strategy).__name__} with {replicas} replica(s); global batch "
        f"{training.batch_size}, {training.batch_size // replicas} per replica"
        + (
            f"; precision {keras.mixed_precision.global_policy().name}"
            if training.mixed_precision
            else ""
        )
    )
    total_steps = (data.steps_per_epoch or 100) * training.epochs
    with strategy.scope():
        model = task.build_model(
            config, data.tokenizer, total_steps=total_steps, **data.model_arguments
        )

    state_path = run_dir / STATE_FILE
    if resuming:
        done = (
            json.loads(state_path.read_text()).get("epochs_completed", 0)
            if state_path.exists()
            else 0
        )
        if done >= training.epochs and (run_dir / WEIGHTS_FILE).exists():
            echo(
                f"{run_dir} already completed {done} epoch(s); nothing to do "
                "(raise --epochs to continue, or --restart to start over)"
            )
            return None, json.loads(state_path.read_text()).get("metrics", {}), None

    backup = backup_lib.TrainingBackup(
        run_dir / "backup",
        training.backup_every_steps,
        monitor=data.monitor,
        mode=data.monitor_mode,
    )
    build_for_fit(model, strategy, data.train)
    return data, model, backup


def _fit(config, run_dir: Path, strategy, points, echo, verbose, data, model, backup):
    training: TrainingConfig = config.training
    state_path = run_dir / STATE_FILE
    point = None
    first = points[0] if points else None
    points = backup_lib.agree_on_point(strategy, points)
    if points and points[0] != first:
        echo(f"workers agreed to resume from {points[0].describe()}")
    if points:
        with strategy.scope():
            point = backup_lib.restore(model, run_dir / "backup", points, echo)
        if point is None:
            echo("warning: no backup loads; training from the start of the run")
        else:
            backup.resume_from(point)

    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    nan_guard = NaNGuard()
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
        backup,
        # With EMA, validation and the checkpoints below see the averaged weights
        # (the backup, above, keeps the raw ones plus the optimizer's averages).
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if training.ema else []),
        best_checkpoint,
        AtomicModelCheckpoint(str(checkpoints / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        EpochLog(echo, training.epochs),
    ]
    callbacks[1:1] = data.callbacks  # before the backup and the checkpoints
    if training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=data.monitor,
                mode=data.monitor_mode,
                patience=training.early_stopping_patience,
            )
        )
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 0
    # A run resumed mid-epoch first finishes that epoch on the batches it had not
    # reached (the shuffles replayed, the consumed batches skipped), then goes on.
    first_epoch = point.epoch if point else 0
    phases = []
    if point is not None and point.step:
        backup_lib.advance_epochs(data.train, point.epoch)
        phases.append((data.train.skip(point.step), first_epoch, first_epoch + 1))
        first_epoch += 1
    elif point is not None:
        backup_lib.advance_epochs(data.train, point.epoch)
    if first_epoch < training.epochs:
        phases.append((data.train, first_epoch, training.epochs))
    started = time.perf_counter()
    history = keras.callbacks.History()
    history.history, history.epoch = {}, []
    for dataset, initial_epoch, epochs in phases:
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
        history.epoch += result.epoch
        for key, values in result.history.items():
            history.history.setdefault(key, []).extend(values)
    seconds = time.perf_counter() - started
    if nan_guard.failed_at:
        epoch, step = nan_guard.failed_at
        raise UserError(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, step {step}; "
            "lower --learning-rate or set training.clipnorm in the config"
        )
    best = checkpoints / "best.weights.h5"
    if best.exists():
        try:
            model.load_weights(best)
        except Exception as error:  # noqa: BLE001 - a damaged file: keep the weights in memory
            echo(
                f"warning: {best} does not load ({type(error).__name__}); keeping the last weights"
            )
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        model.save_weights(tmp)
    metrics = {}
    if history.history:
        values = history.history.get(data.monitor)
        index = (
            int(np.argmin(values) if data.monitor_mode == "min" else np.argmax(values))
            if values
            else -1
        )
        metrics = {k: float(v[index]) for k, v in history.history.items() if k.startswith("val_")}
    epochs_done = (
        json.loads(state_path.read_text()).get("epochs_completed", 0) if state_path.exists() else 0
    )
    epochs_done = max(epochs_done, len(history.epoch) and history.epoch[-1] + 1)
    write_state(
        run_dir, epochs_completed=epochs_done, metrics=metrics, train_seconds=round(seconds, 1)
    )
    echo(
        f"trained {len(history.epoch)} epoch(s) in {seconds:.1f} s; best {data.monitor}: "
        f"{metrics.get(data.monitor, float('nan')):.4f}; weights in {run_dir / WEIGHTS_FILE}"
    )
    return metrics
