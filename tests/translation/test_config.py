"""The translation recipe: partial tables keep the task's defaults; shipped recipes parse."""

from __future__ import annotations

import pytest

from helpers import REPO
from textrnn import translation
from textrnn.config import load_config
from textrnn.errors import ConfigError


def test_partial_config_tables_keep_translation_defaults(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[model.encoder]\nunits = 32\n[training]\nepochs = 2\n", encoding="utf-8")
    config = load_config(translation.Config, recipe)
    assert config.model.encoder.bidirectional and config.model.encoder.cell == "gru"
    assert config.model.encoder.units == 32 and config.training.jit_compile == "false"
    with pytest.raises(ConfigError, match="decoder.bidirectional"):
        load_config(translation.Config, None, {"model.decoder.bidirectional": True})
    for name in ("config.toml", "multi30k.toml"):  # the shipped recipes parse
        load_config(translation.Config, REPO / "tasks" / "translation" / name)


def test_decoder_settings_the_attention_decoder_would_ignore_are_refused():
    for key, value in (("model.decoder.weight_drop", 0.3), ("model.decoder.locked_dropout", True)):
        with pytest.raises(ConfigError, match="not supported by the attention decoder"):
            load_config(translation.Config, None, {key: value})
    config = load_config(translation.Config, None, {"model.encoder.weight_drop": 0.3})
    assert config.model.encoder.layer_arguments()["weight_drop"] == 0.3
