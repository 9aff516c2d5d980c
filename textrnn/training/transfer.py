"""Transfer learning: another run's embedding and RNNStack weights, read from its weights file.

`textrnn sentiment train --init-from LM_RUN` starts a classifier from a language
model's embedding and recurrent stack. Tasks never import each other, so the
weights are read straight from the run's `.weights.h5` file rather than by
rebuilding the other task's model. Keras names that file's groups after the
layer classes (snake case, `_1`, `_2`, ... for repeats), not after the layers:

    layers/<...>embedding/vars/0                            embedding matrix (vocabulary, width)
    layers/rnn_stack/recurrent_layers/<cell>[_k]/vars/*     a recurrent layer's own variables
    layers/rnn_stack/recurrent_layers/<cell>[_k]/cell/vars/*    its cell's (kernel, recurrent
                                                               kernel, bias)

Only the repeat suffixes are relied on, so files that name the fast layers
`fast_lstm` / `fast_gru` (the layout `textrnn.training.weights` migrates) read
the same. The run's final weights come first; a damaged file falls back to its
checkpoints, as `run_dir.load_weights` does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from textrnn.errors import RunDirError
from textrnn.fileio import atomic_write_text
from textrnn.tokenizers import SETTINGS_FILE, VOCABULARY_FILE, Tokenizer
from textrnn.training.run_dir import CONFIG_FILE, WeightsMismatchError, load_first_weights


def copy_tokenizer(source_run_dir: str | os.PathLike, run_dir: Path) -> Tokenizer:
    """Copy a run's vocabulary files into `run_dir` (same ids, so its weights fit)."""
    source = Path(source_run_dir)
    if not (source / CONFIG_FILE).is_file():
        raise RunDirError(f"{source} is not a language-model run directory (--init-from)")
    for name in (VOCABULARY_FILE, SETTINGS_FILE):
        if not (source / name).is_file():
            raise RunDirError(f"{source}: missing {name} (--init-from)")
        atomic_write_text(run_dir / name, (source / name).read_text(encoding="utf-8"))
    return Tokenizer.load(run_dir)


def load_all_weights(model: keras.Model, run_dir: str | os.PathLike) -> Path:
    """Load every weight of the run in `run_dir` into `model` (the same architecture)."""

    def load(path: Path) -> None:
        try:
            model.load_weights(path)
        except ValueError as error:  # Keras: a weight of another shape, a missing layer
            raise WeightsMismatchError(str(error).splitlines()[0]) from None

    return load_first_weights(run_dir, load)


@dataclass(frozen=True)
class StackWeights:
    """An embedding matrix and RNNStack weights read from a weights file.

    Args:
        path: the file they were read from.
        embeddings: `(vocabulary, embedding_dim)`.
        recurrent_layers: per recurrent layer, its weights in `layer.get_weights()` order.
    """

    path: Path
    embeddings: np.ndarray
    recurrent_layers: tuple[tuple[np.ndarray, ...], ...]


def load_embedding_and_stack(model: keras.Model, run_dir: str | os.PathLike) -> Path:
    """Copy the embedding and RNNStack weights of the run in `run_dir` into `model`.

    They go into `model`'s layers named `embedding` and `rnn_stack`; a
    bidirectional stack gets them in its forward direction. The caller checks
    that the two models agree (vocabulary, widths, cell, layers); a file whose
    weights do not have the model's shapes is an error, as in `load_weights`.
    Returns the file read.
    """
    return load_first_weights(run_dir, lambda path: _assign(model, read_stack_weights(path)))


def read_stack_weights(path: str | os.PathLike) -> StackWeights:
    """The embedding matrix and RNNStack weights in the Keras weights file `path`.

    Raises what h5py raises for a damaged file, and KeyError when the file
    holds no single embedding layer or no RNNStack.
    """
    import h5py

    with h5py.File(path, "r") as file:
        layers = file["layers"]
        embedding_groups = [name for name in layers if _is_embedding(name)]
        if len(embedding_groups) != 1:
            raise KeyError(f"{len(embedding_groups)} embedding layers")
        embeddings = np.asarray(layers[embedding_groups[0]]["vars"]["0"])
        recurrent = layers["rnn_stack"]["recurrent_layers"]
        stack = tuple(
            _variables(recurrent[name]["vars"]) + _variables(recurrent[name]["cell"]["vars"])
            for name in sorted(recurrent, key=_repeat_index)
        )
    return StackWeights(Path(path), embeddings, stack)


def _is_embedding(name: str) -> bool:
    """Whether a layer group holds an embedding (`embedding`, `reversible_embedding`, ...)."""
    return re.fullmatch(r"(\w+_)?embedding(_\d+)?", name) is not None


def _repeat_index(name: str) -> int:
    """Keras's order of same-class layers: `lstm`, `lstm_1`, `lstm_2`, ... (not h5's sort)."""
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _variables(group) -> tuple[np.ndarray, ...]:
    """A `vars` group's arrays in Keras's order (keys "0", "1", ...)."""
    return tuple(np.asarray(group[str(index)]) for index in range(len(group)))


def _assign(model: keras.Model, weights: StackWeights) -> None:
    """Copy `weights` into `model` after checking every shape (nothing changes on a mismatch)."""
    embedding = model.get_layer("embedding")
    stack = model.get_layer("rnn_stack")
    targets = [
        layer.forward_layer if stack.bidirectional else layer for layer in stack.recurrent_layers
    ]
    if len(targets) != len(weights.recurrent_layers):
        raise WeightsMismatchError(
            f"{len(weights.recurrent_layers)} recurrent layers where the model has {len(targets)}"
        )
    pairs = [(embedding.embeddings, weights.embeddings)]
    for target, arrays in zip(targets, weights.recurrent_layers, strict=True):
        variables = target.weights
        if len(variables) != len(arrays):
            raise WeightsMismatchError(
                f"a recurrent layer of {len(arrays)} weights where the model has {len(variables)}"
            )
        pairs += zip(variables, arrays, strict=True)
    for variable, array in pairs:
        if tuple(variable.shape) != array.shape:
            raise WeightsMismatchError(
                f"a weight of shape {array.shape} where the model has {tuple(variable.shape)}"
            )
    for variable, array in pairs:
        variable.assign(array)
