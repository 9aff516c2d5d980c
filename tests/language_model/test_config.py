"""textrnn.language_model.config: bad recipe values name the key to fix."""

from __future__ import annotations

import pytest

from helpers import REPO
from textrnn.config import load_config
from textrnn.errors import ConfigError
from textrnn.language_model.config import LanguageModelConfig


def test_bad_config_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="data.layout"):
        load_config(LanguageModelConfig, None, {"data.layout": "paragraphs"})
    with pytest.raises(ConfigError, match="carry_state"):
        load_config(LanguageModelConfig, None, {"data.layout": "lines", "data.carry_state": True})
    with pytest.raises(ConfigError, match="bidirectional"):
        load_config(LanguageModelConfig, None, {"model.stack.bidirectional": True})


def test_bundled_recipes_load() -> None:
    recipes = sorted((REPO / "tasks" / "lm").glob("*.toml"))
    assert len(recipes) >= 6
    for recipe in recipes:
        config = load_config(LanguageModelConfig, recipe)
        assert config.task == "language_model", recipe
