"""MaskedPooling: padding ignored, fully masked rows zeroed, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from textrnn.layers.pooling import MaskedPooling


def test_masked_pooling_ignores_padding_and_zeroes_fully_masked_rows():
    x = np.array(
        [
            [[1.0, -5.0], [3.0, -1.0], [100.0, 100.0]],  # last step padded
            [[-2.0, -4.0], [-6.0, -8.0], [0.0, 0.0]],  # all negative, last step padded
            [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],  # fully masked
        ],
        "float32",
    )
    mask = np.array([[True, True, False], [True, True, False], [False, False, False]])
    maximum = keras.ops.convert_to_numpy(MaskedPooling("max")(x, mask=mask))
    np.testing.assert_allclose(maximum, [[3.0, -1.0], [-2.0, -4.0], [0.0, 0.0]])
    mean = keras.ops.convert_to_numpy(MaskedPooling("mean")(x, mask=mask))
    np.testing.assert_allclose(mean, [[2.0, -3.0], [-4.0, -6.0], [0.0, 0.0]])
    assert np.isfinite(maximum).all() and np.isfinite(mean).all()

    unmasked = keras.ops.convert_to_numpy(MaskedPooling("mean")(x))
    np.testing.assert_allclose(unmasked, x.mean(axis=1), rtol=1e-6)
    assert MaskedPooling("max").compute_output_shape((3, 3, 2)) == (3, 2)


def test_masked_pooling_config_round_trip_and_bad_mode():
    layer = MaskedPooling("mean", name="pool")
    clone = MaskedPooling.from_config(layer.get_config())
    assert clone.mode == "mean" and clone.name == "pool"
    with pytest.raises(ValueError, match="mode"):
        MaskedPooling("min")
