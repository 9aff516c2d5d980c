"""FusedAdam / FusedAdamW: Keras's Adam numbers through TensorFlow's fused kernel."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from textrnn.config import TrainingConfig
from textrnn.training.fused_adam import FusedAdam, FusedAdamW
from textrnn.training.optimizer import make_optimizer

PAIRS = {
    "adam": (keras.optimizers.Adam, FusedAdam, {}),
    "adamw": (keras.optimizers.AdamW, FusedAdamW, {"weight_decay": 0.05}),
}


def _trained(optimizer, id_range: int = 20):
    """A small embedding -> LSTM -> dense model after 3 epochs; its weights and optimizer state."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(20, 6)(inputs)
    x = keras.layers.LSTM(7)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    # Repeated ids in a batch: the embedding's sparse gradient has duplicate rows.
    tokens = rng.integers(0, id_range, (48, 5))
    labels = rng.integers(0, 3, 48)
    model.fit(tokens, labels, epochs=3, batch_size=16, verbose=0, shuffle=False)
    return model


def _values(model):
    return [w.numpy() for w in model.weights] + [v.numpy() for v in model.optimizer.variables]


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("options", [{}, {"clipnorm": 1.0, "use_ema": True}])
def test_same_weights_and_state_as_keras(kind, options):
    keras_class, fused_class, extra = PAIRS[kind]
    expected = _values(_trained(keras_class(0.01, **extra, **options)))
    actual = _values(_trained(fused_class(0.01, **extra, **options)))
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_allclose(a, e, atol=2e-6, rtol=1e-5)


def test_dense_and_sparse_gradients_take_the_fused_kernel():
    dense = keras.Variable(np.ones((4, 3), "float32"))
    table = keras.Variable(np.ones((6, 3), "float32"))
    optimizer = FusedAdam(0.01)
    optimizer.build([dense, table])

    @tf.function
    def step():
        rows = tf.IndexedSlices(tf.ones((3, 3)), tf.constant([1, 1, 4]), tf.constant([6, 3]))
        optimizer.apply_gradients([(tf.ones((4, 3)), dense), (rows, table)])

    op_types = [op.type for op in step.get_concrete_function().graph.get_operations()]
    assert op_types.count("ResourceApplyAdam") == 2
    assert op_types.count("ResourceScatterAdd") == 1  # the sparse velocity's correction
    step()
    assert not np.allclose(dense.numpy(), 1.0)
    assert np.allclose(table.numpy()[[0, 2, 3, 5]], 1.0)  # rows never looked up: no gradient
    # Row 1 was looked up twice with gradient 1: Keras's v is (1 - beta_2) * (1 + 1), not * 2^2.
    velocity = optimizer._velocities[optimizer._get_variable_index(table)].numpy()
    np.testing.assert_allclose(velocity[1], 2 * (1 - optimizer.beta_2), rtol=1e-4)
    np.testing.assert_allclose(velocity[4], 1 - optimizer.beta_2, rtol=1e-4)


def test_state_saved_by_keras_adam_loads_into_fused_adam(tmp_path):
    model = _trained(keras.optimizers.Adam(0.01))
    model.save_weights(tmp_path / "model.weights.h5")
    fresh = _trained(FusedAdam(0.01), id_range=4)  # other weights and state
    fresh.load_weights(tmp_path / "model.weights.h5")
    for e, a in zip(_values(model), _values(fresh), strict=True):
        np.testing.assert_array_equal(a, e)


def test_make_optimizer_builds_the_fused_ones():
    assert type(make_optimizer(TrainingConfig(optimizer="adam"))) is FusedAdam
    optimizer = make_optimizer(TrainingConfig(optimizer="adamw", weight_decay=0.01))
    assert type(optimizer) is FusedAdamW and optimizer.weight_decay == 0.01


MIRRORED = textwrap.dedent(
    """
    import numpy as np, keras, tensorflow as tf
    from textrnn.training.fused_adam import FusedAdam
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    def trained(make_optimizer):
        keras.utils.set_random_seed(0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            inputs = keras.Input((5,), dtype="int32")
            x = keras.layers.LSTM(7)(keras.layers.Embedding(20, 6)(inputs))
            model = keras.Model(inputs, keras.layers.Dense(3)(x))
            model.compile(make_optimizer(), keras.losses.SparseCategoricalCrossentropy(True))
        rng = np.random.default_rng(0)
        model.fit(rng.integers(0, 20, (32, 5)), rng.integers(0, 3, 32), epochs=2,
                  batch_size=8, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights + model.optimizer.variables]

    expected = trained(lambda: keras.optimizers.Adam(0.01))
    actual = trained(lambda: FusedAdam(0.01))
    print(max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual)))
    """
)


def test_same_numbers_under_mirrored_strategy_over_two_cpus():
    """Each replica's update goes to its own copy of the variables (a process of its own:
    the logical CPUs must be set before TensorFlow starts)."""
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 2e-6
