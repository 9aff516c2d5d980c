"""build_model: the classifier's shape and the layer names --init-from relies on."""

from __future__ import annotations

import pytest

from helpers import tiny_config
from textrnn import sentiment
from textrnn.config import TokenizerConfig
from textrnn.tokenizers import build_tokenizer


@pytest.mark.parametrize("pooling", ["final", "max", "mean"])
def test_build_model_gives_logits_per_class(tmp_path, pooling):
    config = tiny_config("unused.tsv", **{"model.pooling": pooling, "model.token_dropout": 0.1})
    texts = ["a good film", "a bad one"]
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), texts, tmp_path)
    model = sentiment.build_model(config, tokenizer, num_classes=3)
    assert model.output_shape == (None, 3)
    assert model.get_layer("embedding").input_dim == tokenizer.vocabulary_size
    assert model.get_layer("rnn_stack").units == config.model.stack.units
    assert model.optimizer is not None  # compiled unless compile=False
    assert not sentiment.build_model(config, tokenizer, compile=False).compiled


def test_awd_options_reach_the_classifier(tmp_path):
    import numpy as np

    from textrnn.layers.dropout import EmbeddingDropout

    overrides = {
        "model.embedding_word_dropout": 0.1,
        "model.stack.weight_drop": 0.3,
        "model.stack.num_layers": 2,
        "model.stack.dropout": 0.2,
        "model.stack.locked_dropout": True,
    }
    config = tiny_config("unused.tsv", **overrides)
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), ["a good film"], tmp_path)
    model = sentiment.build_model(config, tokenizer)
    assert isinstance(model.get_layer("embedding_word_dropout"), EmbeddingDropout)
    stack = model.get_layer("rnn_stack")
    assert stack.locked_dropout and stack.weight_drop == 0.3
    ids = np.array([[2, 3, 4, 0], [3, 0, 0, 0]], "int32")
    assert np.isfinite(model.train_on_batch(ids, np.array([0, 1]))[0])
