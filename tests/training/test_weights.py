"""Weights files: the old fast-layer group names still load (migrated in a copy)."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from textrnn.layers.rnn_stack import RNNStack
from textrnn.training.weights import load_weights_file

TIME, FEATURES, UNITS = 6, 5, 4


def _stack_model(implementation, **settings):
    inputs = keras.Input((TIME, FEATURES))
    outputs = RNNStack(implementation=implementation, name="stack", **settings)(inputs)
    return keras.Model(inputs, outputs)


def _random_weights(layer, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))


def _same_weights(a, b):
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weights_files_with_the_old_fast_layer_names_still_load(cell, tmp_path):
    settings = dict(cell=cell, num_layers=2, units=UNITS, bidirectional=False)
    written = _stack_model("fast", **settings)
    _random_weights(written.get_layer("stack"))
    path = tmp_path / "old.weights.h5"
    written.save_weights(path)
    with h5py.File(path, "r+") as f:  # the layout textrnn wrote before: "fast_lstm", "fast_lstm_1"
        layers = f["layers/rnn_stack/recurrent_layers"]  # groups named after classes
        for name in sorted(layers):
            layers.move(name, "fast_" + name)
    before = path.read_bytes()
    for implementation in ("fast", "keras"):
        loaded = _stack_model(implementation, **settings)
        load_weights_file(loaded, path)
        _same_weights(written, loaded)
    assert path.read_bytes() == before  # the file itself is left as it was
    # A file that does not fit the model still fails.
    with pytest.raises(ValueError):
        load_weights_file(_stack_model("fast", **dict(settings, units=UNITS + 1)), path)
