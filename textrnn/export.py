"""SavedModel export: versioned, atomic, string in / string out.

`export_run(run_dir, out)` writes `out/<N>/` where N is one more than the
highest numeric version present (TensorFlow Serving's layout); the export is
written to a temporary sibling directory and renamed into place, so an
interrupted export never leaves a half-written version, and an existing
version is never overwritten.

`load_serving(path)` opens what a `--model` option points at: an export
version directory, an export base directory (highest version), a LiteRT export
(`export-litert`, run on the host by `textrnn.edge` behind the same signature
names), or a run directory (the same signatures built in-process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textrnn import tasks
from textrnn.edge.manifest import is_litert_export
from textrnn.errors import ModelPathError, RunDirError
from textrnn.fileio import ensure_writable_directory

logger = logging.getLogger(__name__)

MANIFEST = "textrnn.json"  # in assets.extra: task and settings, for clients that want them


def version_directories(base: Path) -> dict[int, Path]:
    """Version number -> directory for the numeric subdirectories of `base`, lowest first.

    TensorFlow Serving's layout: `base/<N>/`. A zero-padded name (`007`) is
    version 7, as TensorFlow Serving reads it; where `7` exists too, `7` wins.
    """
    if not base.is_dir():
        return {}
    found: dict[int, Path] = {}
    for path in sorted(base.iterdir(), key=lambda p: (len(p.name), p.name), reverse=True):
        if path.is_dir() and re.fullmatch(r"\d+", path.name):
            found[int(path.name)] = path  # the shortest name of a number is set last
    return dict(sorted(found.items()))


def numeric_versions(base: Path) -> list[int]:
    """The version numbers under `base`, lowest first."""
    return list(version_directories(base))


def is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


def run_task_entry(run_dir: Path, expected_task: str | None, command: str) -> tasks.TaskEntry:
    """The task table's entry for the run in `run_dir`, checked against the command's task
    (`expected_task`): a run of another task is an error naming the `command` to use."""
    from textrnn.training.run_dir import run_task

    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir} (--run-dir)")
    entry = tasks.find(run_task(run_dir))
    if expected_task and not tasks.same_task(entry.name, expected_task):
        raise RunDirError(
            f"{run_dir} holds a {entry.name!r} run, not a {expected_task!r} one; "
            f"export it with `textrnn {entry.command} {command}`"
        )
    return entry


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    expected_task: str | None = None,
) -> Path:
    """Export the run in `run_dir` to the next numeric version under `out`.

    `expected_task` (the command's task): a run of another task is an error, not an
    export of the wrong kind under that task's directory.
    """
    import keras

    run_dir = Path(run_dir)
    entry = run_task_entry(run_dir, expected_task, "export")
    base = Path(out) if out else Path("saved_models") / entry.command
    task = entry.load()
    parts = task.serving_signatures(task.load_run(run_dir))

    archive = keras.export.ExportArchive()
    for resource in parts.resources:
        archive.track(resource)
    for name, function in parts.signatures.items():
        archive.add_endpoint(name, function)
    # Only now, with the run loaded, create --out: a failed export leaves no empty directory.
    with staging_directory(base, "export") as tmp:
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        manifest = {"task": entry.name, **parts.manifest}
        (extra / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if parts.warmup_requests:
            write_warmup_requests(extra / "tf_serving_warmup_requests", parts.warmup_requests)
        return publish_version(tmp, base)


@contextlib.contextmanager
def staging_directory(base: Path, kind: str) -> Iterator[Path]:
    """The path `base/.tmp-<kind>-<pid>` (not created) to build a version in, then hand to
    `publish_version`. Whatever is left of it is removed afterwards, and `base` too when it
    was created here and no version landed in it: a failed export leaves nothing behind."""
    created = not base.exists()
    ensure_writable_directory(base, "--out")
    tmp = base / f".tmp-{kind}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                base.rmdir()  # only if no version landed in it


def publish_version(tmp: Path, base: Path) -> Path:
    """Rename the finished `tmp` to the next numeric version under `base`; return it.

    Never overwrites: a concurrent export that claimed the number takes the one after.
    """
    while True:
        version = (numeric_versions(base) or [0])[-1] + 1
        target = base / str(version)
        try:
            os.rename(tmp, target)
            return target
        except OSError:
            if not target.exists():
                raise


def write_warmup_requests(path: Path, requests: list[tuple[str, dict[str, Any]]]) -> None:
    """TensorFlow Serving warm-up records (PredictionLog in a TFRecord file).

    Written only if the TensorFlow Serving API is installed (the `serving` extra).
    """
    try:
        import tensorflow as tf
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        return
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


@dataclass
class Serving:
    """Serving functions behind a `--model` path, whichever kind it is."""

    task: str
    path: Path
    signatures: dict[str, Any]
    source: str  # "export", "litert" or "run"
    manifest: dict[str, Any]
    keep_alive: Any = None  # the loaded object that owns the functions
    inference: Any = None  # a run directory's in-process inference object (`ServingParts`)


def _model_kind(path: Path) -> str | None:
    """ "export" (SavedModel), "litert" (`export-litert`) or None for an incomplete version."""
    if is_saved_model(path):
        return "export"
    return "litert" if is_litert_export(path) else None


def resolve_model_path(path: str | os.PathLike) -> tuple[str, Path]:
    """("export" | "litert" | "run", directory) for what a `--model` option points at."""
    path = Path(path)
    if not path.exists():
        raise ModelPathError(
            f"model not found: {path} (--model takes a run directory or an export)"
        )
    if _model_kind(path):
        return _model_kind(path), path
    directories = version_directories(path)
    versions = list(directories)
    complete = [v for v in versions if _model_kind(directories[v])]
    if complete:
        # The highest version that holds a SavedModel: one being copied in (no
        # saved_model.pb yet) does not hide the ones before it.
        skipped = [v for v in versions if v > complete[-1]]
        if skipped:
            logger.warning(
                "%s: version(s) %s hold no saved_model.pb; using version %d",
                path,
                ", ".join(map(str, skipped)),
                complete[-1],
            )
        return _model_kind(directories[complete[-1]]), directories[complete[-1]]
    if (path / "config.json").exists():
        return "run", path
    if versions:
        raise ModelPathError(
            f"{path}: no version directory ({', '.join(map(str, versions))}) holds a "
            "saved_model.pb; is the export complete?"
        )
    raise ModelPathError(
        f"{path} is neither a run directory (no config.json) nor a SavedModel export "
        "(no saved_model.pb)"
    )


def load_serving(path: str | os.PathLike, expected_task: str | None = None) -> Serving:
    import tensorflow as tf

    kind, resolved = resolve_model_path(path)
    if kind == "litert":
        # A LiteRT export: the same signature names, run on the host (textrnn.edge).
        from textrnn.edge.serving import litert_signatures

        loaded, signatures, manifest = litert_signatures(resolved)
        serving = Serving(loaded.task, loaded.path, signatures, "litert", manifest, loaded)
    elif kind == "export":
        try:
            loaded = tf.saved_model.load(str(resolved))
        except Exception as error:  # noqa: BLE001 - TF raises many kinds for a bad SavedModel
            raise ModelPathError(
                f"{resolved}: cannot load SavedModel ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''})"
            ) from None
        manifest = {}
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads((resolved / "assets.extra" / MANIFEST).read_text())
        task = manifest.get("task", expected_task or "")
        serving = Serving(task, resolved, dict(loaded.signatures), "export", manifest, loaded)
    else:
        from textrnn.training.run_dir import run_task

        entry = tasks.find(run_task(resolved))
        task = entry.load()
        parts = task.serving_signatures(task.load_run(resolved))
        manifest = {"task": entry.name, **parts.manifest}
        serving = Serving(
            entry.name, resolved, parts.signatures, "run", manifest, parts, parts.inference
        )
    if expected_task and serving.task and not tasks.same_task(serving.task, expected_task):
        raise ModelPathError(f"{path} holds a {serving.task!r} model, not a {expected_task!r} one")
    return serving
