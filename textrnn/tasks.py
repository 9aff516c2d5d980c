"""The task table: the one place that knows which tasks exist.

Training, export, the CLI and the server reach a task only through this table:

    entry = tasks.find("lm")          # by its name or its CLI command; cheap (no TensorFlow)
    task = entry.load()               # imports the task's package: its `TASK` contract
    task.load_run(run_dir)            # -> the task's run dataclass

Every task package (`textrnn/<task>/`) exposes one `TASK = Task(...)` in its
`__init__.py`. Tasks never import each other; what they share lives a layer
below (layers/, decoding/, tokenizers, training/).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textrnn.errors import ModelPathError

if TYPE_CHECKING:
    import keras

    from textrnn.training.fit import TaskData


@dataclass(frozen=True)
class ServingParts:
    """What a task hands to export and to in-process serving.

    signatures: name -> `tf.function` with an input signature (strings in, strings out).
    resources: objects the SavedModel must track (models, tokenizers, `tf.Module`s).
    manifest: settings written to `assets.extra/textrnn.json` for clients.
    warmup_requests: (signature, inputs) pairs for TensorFlow Serving's warm-up file.
    inference: the in-process inference object, if the task has one (for run directories).
    """

    signatures: dict[str, Any]
    resources: list[Any]
    manifest: dict[str, Any]
    warmup_requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    inference: Any = None


@dataclass(frozen=True)
class LiteRTParts:
    """What a task hands to `export-litert` (`textrnn.edge.convert`).

    functions: signature name -> `tf.function` with a fixed-shape numeric input signature
        (token ids and states in, probabilities / logits / states out), built without XLA
        from the run's trained layers; converted with LiteRT's built-in ops only.
    resources: objects the intermediate SavedModel must track (models, `tf.Module`s).
    tokenizers: name -> in-graph tokenizer whose vocabulary and host tables ship with the
        file (`text`, or `source` and `target`); `textrnn.edge` tokenizes on the host.
    manifest: task settings the host runtime needs (labels, lengths, states, decoding).
    """

    functions: dict[str, Any]
    resources: list[Any]
    tokenizers: dict[str, Any]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """The typed contract every task fulfils.

    Args:
        name: the `task` key of its config (`config.json`).
        config_class: its frozen config dataclass.
        run_files: run-directory entries the task writes beside training's own.
        load_datasets: `(config, run_dir) -> TaskData`: reads data, learns or reloads
            tokenizers and labels in `run_dir`, returns train / validation datasets.
        build_model: `(config, tokenizers, total_steps=None, compile=True, **arguments)`
            -> a functional `keras.Model`.
        load_run: `(run_dir) -> run`: the task's run dataclass (config, tokenizers,
            model, ...), rebuilt from a run directory.
        serving_signatures: `(run) -> ServingParts`: the functions that export.
        litert_functions: `(run, max_length) -> LiteRTParts`: the numeric, fixed-shape
            functions `export-litert` converts (`max_length`: the `--max-length` flag or
            None for the task's default); None if the task has no LiteRT export.
    """

    name: str
    config_class: type
    run_files: tuple[str, ...]
    load_datasets: Callable[[Any, Path], TaskData]
    build_model: Callable[..., keras.Model]
    load_run: Callable[[Path], Any]
    serving_signatures: Callable[[Any], ServingParts]
    litert_functions: Callable[[Any, int | None], LiteRTParts] | None = None


@dataclass(frozen=True)
class TaskEntry:
    """A row of the table: names and where the task lives (cheap: imports nothing)."""

    name: str  # config.json's `task`
    command: str  # `textrnn <command> ...` and the export folder `saved_models/<command>/`
    package: str
    summary: str

    def load(self) -> Task:
        return importlib.import_module(self.package).TASK


TABLE = (
    TaskEntry("sentiment", "sentiment", "textrnn.sentiment", "text classification"),
    TaskEntry("language_model", "lm", "textrnn.language_model", "language modeling"),
    TaskEntry("translation", "translation", "textrnn.translation", "translation"),
)


def find(name: str) -> TaskEntry:
    """The entry whose name or command is `name`."""
    for entry in TABLE:
        if name in (entry.name, entry.command):
            return entry
    raise ModelPathError(f"unknown task {name!r}; textrnn knows {', '.join(e.name for e in TABLE)}")


def same_task(first: str, second: str) -> bool:
    """Whether two names (task names or commands) denote the same task."""
    return find(first).name == find(second).name
