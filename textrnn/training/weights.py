"""Loading weights files into a model, including files written in older layouts.

Run directories, checkpoints and step backups all load through
`load_weights_file`, so a file written by an earlier textrnn keeps loading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras

# Weights files written before that used these group names.
_LEGACY_GROUPS = {"fast_lstm": "lstm", "fast_gru": "gru"}


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """`model.load_weights(path)`, also for files that name fast layers "fast_lstm" / "fast_gru".

    Such files (written by textrnn before its fast layers took Keras's names)
    are loaded from a renamed temporary copy; the file itself is not changed.
    """
    try:
        model.load_weights(path)
        return
    except ValueError:
        renamed = _renamed_legacy_copy(Path(path))
        if renamed is None:
            raise
    try:
        model.load_weights(renamed)
    finally:
        shutil.rmtree(renamed.parent, ignore_errors=True)


def _legacy_name(name: str) -> str | None:
    for old, new in _LEGACY_GROUPS.items():
        if name == old or (name.startswith(old + "_") and name[len(old) + 1 :].isdigit()):
            return new + name[len(old) :]
    return None


def _renamed_legacy_copy(path: Path) -> Path | None:
    """A temporary copy of the weights file `path` with legacy group names renamed, or None."""
    import h5py

    try:
        with h5py.File(path, "r") as source:
            groups: list[str] = []
            source.visit(
                lambda name: groups.append(name) if isinstance(source[name], h5py.Group) else None
            )
    except OSError:
        return None
    legacy = [g for g in groups if _legacy_name(g.rsplit("/", 1)[-1])]
    if not legacy:
        return None
    directory = Path(tempfile.mkdtemp(prefix="textrnn-weights-"))
    copy = directory / path.name
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as target:
        for group in sorted(legacy, key=lambda g: g.count("/"), reverse=True):  # deepest first
            parent, _, name = group.rpartition("/")
            target.move(group, f"{parent}/{_legacy_name(name)}" if parent else _legacy_name(name))
    return copy
