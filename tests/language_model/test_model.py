"""The language model's regularizers: AR / TAR in the training loss, AWD-LSTM layers built."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from textrnn import config as config_lib
from textrnn.language_model import model as model_lib
from textrnn.language_model.config import LanguageModelConfig
from textrnn.layers.dropout import EmbeddingDropout, LockedDropout

VOCABULARY = 12


def _config(**changes) -> LanguageModelConfig:
    values = {
        "model.embedding_dim": 6,
        "model.stack.units": 6,
        "model.stack.num_layers": 2,
        "training.jit_compile": "false",
    }
    return config_lib.replace(LanguageModelConfig(), **{**values, **changes})


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCABULARY, size=(3, 7)).astype("int32")
    ids[2, 5:] = 0  # padding
    targets = np.roll(ids, -1, axis=1)
    return ids, targets


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 0.0), (0.0, 1.0), (2.0, 1.0)])
def test_ar_tar_change_the_training_loss_as_the_formulas_say(alpha, beta):
    config = _config(**{"model.ar_alpha": alpha, "model.tar_beta": beta})
    keras.utils.set_random_seed(1)
    model = model_lib.build_model(
        config, SimpleNamespace(vocabulary_size=VOCABULARY), compile=False
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),  # the weights stay put: one loss, two ways
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    ids, targets = _batch()
    outputs = keras.Model(model.input, model.get_layer("rnn_stack").output[0])(ids).numpy()
    cross_entropy = model.evaluate(ids, targets, verbose=0)  # no AR / TAR outside training
    loss = model.train_on_batch(ids, targets)
    mask = ids != 0
    ar = (outputs[mask] ** 2).mean()  # no dropout configured: dropped outputs = outputs
    pairs = mask[:, 1:] & mask[:, :-1]
    tar = ((outputs[:, 1:] - outputs[:, :-1])[pairs] ** 2).mean()
    np.testing.assert_allclose(loss, cross_entropy + alpha * ar + beta * tar, rtol=1e-5)


def test_awd_options_build_their_layers_and_default_builds_none():
    awd = _config(
        **{
            "model.embedding_dropout": 0.3,
            "model.embedding_word_dropout": 0.1,
            "model.output_dropout": 0.4,
            "model.stack.dropout": 0.2,
            "model.stack.locked_dropout": True,
            "model.stack.weight_drop": 0.5,
        }
    )
    tokenizer = SimpleNamespace(vocabulary_size=VOCABULARY)
    model = model_lib.build_model(awd, tokenizer)
    assert isinstance(model.get_layer("embedding_word_dropout"), EmbeddingDropout)
    assert isinstance(model.get_layer("embedding_dropout"), LockedDropout)
    assert isinstance(model.get_layer("output_dropout"), LockedDropout)
    stack = model.get_layer("rnn_stack")
    assert all(layer.weight_drop == 0.5 for layer in stack.recurrent_layers)
    ids, targets = _batch()
    assert np.isfinite(model.train_on_batch(ids, targets))
    plain = model_lib.build_model(_config(), tokenizer)
    names = {layer.name for layer in plain.layers}
    assert not names & {"embedding_word_dropout", "embedding_dropout", "activation_regularizer"}
    assert not any(
        hasattr(layer, "weight_drop") and layer.weight_drop
        for layer in plain.get_layer("rnn_stack").recurrent_layers
    )
