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
