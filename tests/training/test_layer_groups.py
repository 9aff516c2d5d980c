"""Discriminative learning rates and gradual unfreezing: which layers train, and how fast."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from textrnn.config import TrainingConfig
from textrnn.errors import ConfigError
from textrnn.layers.rnn_stack import RNNStack
from textrnn.training.layer_groups import (
    GradualUnfreezing,
    group_rates,
    install_layer_rates,
    layer_groups,
    unfreezing_stage,
)
from textrnn.training.schedules import peak_fraction


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


def test_unfreezing_stages_are_one_epoch_each_then_the_rest():
    # 4 groups over 6 epochs: stages 0, 1, 2 are epochs 0, 1, 2; stage 3 is epochs 3-5.
    assert [unfreezing_stage(e, 4, 6) for e in range(6)] == [
        (0, 0, 1),
        (1, 1, 1),
        (2, 2, 1),
        (3, 3, 3),
        (3, 3, 3),
        (3, 3, 3),
    ]
    assert unfreezing_stage(1, 4, 2) == (1, 1, 1)  # fewer epochs than groups


def test_stage_cycles_set_each_batchs_learning_rate_from_its_stages_triangle():
    model = _classifier()
    x, y = _data()  # 32 rows, batches of 8: 4 steps an epoch
    model.optimizer.build(model.trainable_variables)
    training = TrainingConfig(
        gradual_unfreeze=True, lr_schedule="slanted", learning_rate=0.01, stage_lr_decay=0.5
    )
    callback = GradualUnfreezing(
        install_layer_rates(model, training), stage_cycles=(0.01, 0.5, 5, 4)
    )

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.seen.append(float(self.model.optimizer.learning_rate.numpy()))

    record = Record()
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[callback, record])
    expected = []
    for epoch in range(5):
        stage, first, length = unfreezing_stage(epoch, 4, 5)
        for batch in range(4):
            progress = ((epoch - first) * 4 + batch) / (length * 4)
            expected.append(0.01 * 0.5**stage * peak_fraction("slanted", progress))
    np.testing.assert_allclose(record.seen, expected, rtol=1e-6)
    # Each stage restarts low: the first batch of epochs 1, 2, 3 is its stage's floor.
    assert record.seen[4] == pytest.approx(0.005 / 32) and record.seen[12] == pytest.approx(
        0.00125 / 32
    )


@pytest.mark.parametrize(
    "settings",
    [
        dict(stage_lr_decay=-0.5, gradual_unfreeze=True, lr_schedule="slanted"),
        dict(stage_lr_decay=1.5, gradual_unfreeze=True, lr_schedule="slanted"),
        dict(stage_lr_decay=0.5, gradual_unfreeze=False, lr_schedule="slanted"),
        dict(stage_lr_decay=0.5, gradual_unfreeze=True, lr_schedule="cosine"),
    ],
)
def test_stage_cycles_refuse_settings_they_cannot_honour(settings):
    with pytest.raises(ConfigError, match="stage_lr_decay"):
        TrainingConfig(**settings)
