"""The run directory: everything needed to resume, evaluate, predict and export.

Layout (`runs/<task>/` by default):

    config.json           resolved configuration (its `task` key names the task)
    model.weights.h5      the final (best) weights, written atomically
    state.json            epochs completed, best validation metric, training time
    backup/               step-level backups + backup.json index (`textrnn.training.backup`)
    checkpoints/          best.weights.h5, last.weights.h5
    logs/                 TensorBoard
    ...                   the task's own files (its `Task.run_files`: vocabularies,
                          tokenizer settings, labels)

Training, backup, export and `--init-from` all read and write it through this
module. `--run-dir` may be shared with other files: only the entries named here
and by the task are ever deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras

from textrnn import config as config_lib
from textrnn.errors import ConfigError, RunDirError
from textrnn.fileio import atomic_write_text, ensure_writable_directory, remove_stale_temporaries
from textrnn.training.weights import load_weights_file

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
BACKUP_DIR = "backup"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
# What training writes whatever the task; a task adds its own (`Task.run_files`).
RUN_ENTRIES = (CONFIG_FILE, STATE_FILE, WEIGHTS_FILE, BACKUP_DIR, CHECKPOINTS_DIR, LOGS_DIR)
# Sections whose change makes old weights meaningless; training.* may change on resume.
RESUME_SECTIONS = ("task", "data", "tokenizer", "model")


def run_task(run_dir: Path) -> str:
    """The `task` named in `run_dir/config.json`."""
    config_path = run_dir / CONFIG_FILE
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))["task"]
    except FileNotFoundError:
        raise RunDirError(
            f"{run_dir}: missing config.json; is this a textrnn run directory?"
        ) from None
    except (ValueError, KeyError) as error:
        raise RunDirError(f"{config_path}: corrupt ({error}); retrain with --restart") from None


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


def clear_run_dir(run_dir: Path, task_files: Iterable[str], keep: Iterable[str] = ()) -> None:
    """Delete what `train` wrote (`RUN_ENTRIES` and the task's `task_files`) but the
    entries named in `keep`, and nothing else: --run-dir may be shared."""
    keep = set(keep)
    for name in (*RUN_ENTRIES, *task_files):
        path = run_dir / name
        if name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def prepare_run_dir(
    run_dir: str | os.PathLike, config: Any, restart: bool, task_files: Iterable[str] = ()
) -> tuple[Path, bool]:
    """Make `run_dir` ready; return (path, resuming). `--restart` clears the run first."""
    run_dir = ensure_writable_directory(run_dir)
    task_files = tuple(task_files)
    if restart:
        clear_run_dir(run_dir, task_files)
    for directory in (run_dir, *(run_dir / name for name in (*RUN_ENTRIES, *task_files))):
        if directory.is_dir():
            remove_stale_temporaries(directory)  # left by a run killed mid-write
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        return run_dir, False
    saved = _with_defaults(read_json(saved_path, "config"), type(config))
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


def _with_defaults(saved: Any, config_class: type) -> Any:
    """A saved config with the keys added since it was written at their defaults.

    A run written before a new (default) key existed resumes; a saved config
    that no longer loads is compared as it is (and so refuses to resume).
    """
    try:
        return config_lib.to_dict(config_lib.from_dict(config_class, saved))
    except Exception:  # noqa: BLE001 - a ConfigError or a non-dataclass config
        return saved


def write_state(run_dir: Path, **values: Any) -> None:
    path = run_dir / STATE_FILE
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(values)
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def weights_files(run_dir: str | os.PathLike) -> list[Path]:
    """The run's weights files in the order to try them: the final weights, then the best
    and the last checkpoint (a damaged file falls back to the next). They may not exist."""
    run_dir = Path(run_dir)
    return [
        run_dir / WEIGHTS_FILE,
        run_dir / CHECKPOINTS_DIR / "best.weights.h5",
        run_dir / CHECKPOINTS_DIR / "last.weights.h5",
    ]


class WeightsMismatchError(Exception):
    """A weights file that reads fine but does not fit the model; its message says how,
    e.g. "a weight of shape (8, 16) where the model has (8, 24)"."""


def load_first_weights(run_dir: str | os.PathLike, load: Callable[[Path], None]) -> Path:
    """Call `load(path)` on the run's weights files in order (`weights_files`) until one loads.

    A file that `load` rejects with `WeightsMismatchError` does not fit the model; any
    other exception means a damaged file, and the next one is tried. Returns the file
    loaded; raises `RunDirError` saying which case it was when none loads.
    """
    run_dir = Path(run_dir)
    failures, mismatches = [], []
    for path in weights_files(run_dir):
        if not path.exists():
            continue
        try:
            load(path)
        except WeightsMismatchError as error:
            failures.append(f"{path.name}: ValueError")
            mismatches.append(str(error))
            continue
        except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
            failures.append(f"{path.name}: {type(error).__name__}")
            mismatches.append(None)
            continue
        if failures:
            logger.warning("loaded %s instead of the damaged %s", path, ", ".join(failures))
        return path
    if failures and all(mismatches):
        raise RunDirError(
            f"{run_dir}: the weights do not fit the model that its config.json, labels and "
            f"vocabulary describe ({mismatches[0]}); was one of those files edited or replaced? "
            "Restore it, or retrain with --restart"
        )
    if failures:
        raise RunDirError(
            f"{run_dir}: every weights file is damaged ({'; '.join(failures)}); "
            "retrain with --restart"
        )
    raise RunDirError(f"{run_dir}: no trained weights ({WEIGHTS_FILE}); run `train` first")


def load_weights(model: keras.Model, run_dir: str | os.PathLike) -> Path:
    """Load the run's final weights, falling back to its checkpoints if those are damaged."""

    def load(path: Path) -> None:
        try:
            with warnings.catch_warnings():
                # Keras warns about each layer it cannot match before raising; the error says it.
                warnings.simplefilter("ignore")
                load_weights_file(model, path)
        except ValueError as error:
            # Keras: "... expected variable.shape=(32, 3), Received: value.shape=(32, 2) ..."
            shapes = re.search(
                r"variable\.shape=(\([^)]*\)).*?value\.shape=(\([^)]*\))", str(error)
            )
            if shapes is None:
                raise
            model_shape, file_shape = shapes.groups()
            raise WeightsMismatchError(
                f"a weight of shape {file_shape} where the model has {model_shape}"
            ) from None

    return load_first_weights(run_dir, load)
