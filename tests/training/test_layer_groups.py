"""Discriminative learning rates and gradual unfreezing: which layers train, and how fast."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from textrnn.config import TrainingConfig
from textrnn.layers.rnn_stack import RNNStack
from textrnn.training.layer_groups import (
    GradualUnfreezing,
    group_rates,
    install_layer_rates,
    layer_groups,
)


def _classifier(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 6, mask_zero=True, name="embedding")(ids)
    x = RNNStack("gru", num_layers=2, units=5, return_sequences=False, name="rnn_stack")(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    model = keras.Model(ids, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(1, 20, size=(32, 7)).astype("int32"), rng.integers(0, 2, size=32)


def _snapshot(model):
    groups = layer_groups(model)
    return [[v.numpy().copy() for v in group] for group in groups]


def _changed(before, after):
    return [
        any(not np.array_equal(a, b) for a, b in zip(g0, g1, strict=True))
        for g0, g1 in zip(before, after, strict=True)
    ]


def test_groups_are_embedding_each_recurrent_layer_and_the_head():
    model = _classifier()
    groups = layer_groups(model)
    stack = model.get_layer("rnn_stack")
    assert len(groups) == 4
    assert groups[0] == [model.get_layer("embedding").embeddings]
    assert groups[1] == list(stack.recurrent_layers[0].trainable_variables)
    assert groups[3] == list(model.get_layer("logits").trainable_variables)


def test_rates_fall_by_the_factor_per_group_and_frozen_groups_are_zero():
    np.testing.assert_allclose(group_rates(3, 2.0), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(group_rates(3, 2.0, unfrozen=1), [0.0, 0.0, 1.0])


def test_gradual_unfreezing_trains_only_the_layers_it_should():
    model = _classifier()
    x, y = _data()
    model.optimizer.build(model.trainable_variables)
    layer_rates = install_layer_rates(
        model, TrainingConfig(gradual_unfreeze=True, discriminative_lr=2.6)
    )
    callback = GradualUnfreezing(layer_rates)
    changes = []
    for epoch in range(4):
        before = _snapshot(model)
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=0,
            callbacks=[callback],
        )
        changes.append(_changed(before, _snapshot(model)))
    # Epoch 1: the head only; epoch 2: also the top recurrent layer; ...; epoch 4: all.
    assert changes == [
        [False, False, False, True],
        [False, False, True, True],
        [False, True, True, True],
        [True, True, True, True],
    ]


@pytest.mark.parametrize("factor", [1.0, 4.0])
def test_discriminative_rates_scale_each_groups_first_step(factor):
    """Adam's first step moves each weight by about its rate: the ratio between groups
    is the factor."""
    x, y = _data()
    moves = []
    for rates in (False, True):
        model = _classifier(seed=3)
        model.optimizer.build(model.trainable_variables)
        if rates:
            install_layer_rates(model, TrainingConfig(discriminative_lr=factor))
        before = _snapshot(model)
        model.train_on_batch(x[:8], y[:8])
        after = _snapshot(model)
        moves.append([np.abs(a[0] - b[0]).max() for a, b in zip(before, after, strict=True)])
    plain, grouped = np.array(moves[0]), np.array(moves[1])
    np.testing.assert_allclose(grouped / plain, group_rates(4, factor), rtol=1e-3)
