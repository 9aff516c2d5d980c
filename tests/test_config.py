"""Config resolution: defaults -> TOML recipe -> flags (rightmost wins); bad keys and values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textrnn import config as config_lib
from textrnn.config import load_config
from textrnn.errors import ConfigError, UserError
from textrnn.sentiment.config import SentimentConfig

REPO = Path(__file__).resolve().parents[1]


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults():
    config = load_config(SentimentConfig)
    assert config.task == "sentiment"
    assert config.tokenizer.kind == "word" and config.tokenizer.lowercase
    assert config.model.stack.cell == "lstm" and config.model.stack.num_layers == 1
    assert config.training.strategy == "auto" and config.training.epochs >= 1
    assert config.data.valid == "" and 0 < config.data.validation_split < 1
    assert config == SentimentConfig()


def test_toml_overrides_defaults_and_keeps_the_rest(tmp_path):
    path = _toml(
        tmp_path,
        """
[data]
text_column = "sentence"
label_names = { "0" = "negative", "1" = "positive" }
[tokenizer]
kind = "char"
unknown_aliases = "<unk>"
[model.stack]
cell = "gru"
bidirectional = true
[training]
epochs = 3
learning_rate = 1
""",
    )
    config = load_config(SentimentConfig, path)
    assert config.data.text_column == "sentence"
    assert config.data.label_names == {"0": "negative", "1": "positive"}
    assert config.tokenizer.kind == "char"
    assert config.tokenizer.unknown_aliases == ("<unk>",)
    assert config.model.stack.cell == "gru" and config.model.stack.bidirectional
    assert config.model.stack.units == SentimentConfig().model.stack.units  # untouched default
    assert config.training.epochs == 3
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)
    assert config.training.batch_size == SentimentConfig().training.batch_size


def test_flags_override_the_recipe_rightmost_wins(tmp_path):
    path = _toml(tmp_path, "[training]\nepochs = 3\nbatch_size = 8\n[model.stack]\nunits = 16\n")
    config = load_config(
        SentimentConfig,
        path,
        {
            "training.epochs": 7,
            "training.batch_size": None,
            "model.stack.units": "32",
            "tokenizer.lowercase": "false",
        },
    )
    assert config.training.epochs == 7  # flag beats recipe
    assert config.training.batch_size == 8  # None means "flag not given"
    assert config.model.stack.units == 32  # strings from the command line are coerced
    assert config.tokenizer.lowercase is False


def test_bundled_recipes_load():
    for recipe in sorted((REPO / "tasks" / "sentiment").glob("*.toml")):
        config = load_config(SentimentConfig, recipe)
        assert config.task == "sentiment", recipe


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("colour = 1\n", "'colour'"),
        ("[trainig]\nepochs = 1\n", "'trainig'"),
        ("[training]\nepoch = 1\n", "'epoch'"),
        ("[model.stack]\nlayers = 2\n", "'layers'"),
    ],
)
def test_unknown_keys_are_rejected_with_the_key_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named) as error:
        load_config(SentimentConfig, _toml(tmp_path, text))
    assert "known keys" in str(error.value)
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)


def test_unknown_flag_key_is_rejected():
    with pytest.raises(ConfigError, match="'epoch'"):
        load_config(SentimentConfig, None, {"training.epoch": 2})


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"model.stack.cell": "transformer"}, "model.stack.cell"),
        ({"model.stack.units": 0}, "model.stack.units"),
        ({"model.stack.dropout": 1.5}, "model.stack.dropout"),
        ({"model.pooling": "attention"}, "model.pooling"),
        ({"tokenizer.kind": "byte"}, "tokenizer.kind"),
        ({"tokenizer.vocabulary_size": 3}, "tokenizer.vocabulary_size"),
        ({"training.epochs": "three"}, "training.epochs"),
        ({"training.epochs": 0}, "training.epochs"),
        ({"training.epochs": 2.5}, "training.epochs"),
        ({"training.learning_rate": 0}, "training.learning_rate"),
        ({"training.learning_rate": "fast"}, "training.learning_rate"),
        ({"training.strategy": "gpu"}, "training.strategy"),
        ({"training.mixed_precision": "fp8"}, "training.mixed_precision"),
        ({"training.clipnorm": -1.0}, "training.clipnorm"),
        ({"tokenizer.lowercase": "maybe"}, "tokenizer.lowercase"),
        ({"data.max_length": 0}, "data.max_length"),
        ({"data.validation_split": 1.0}, "data.validation_split"),
        ({"data.text_column": 3}, "data.text_column"),
    ],
)
def test_bad_values_are_rejected_with_the_option_named(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(SentimentConfig, None, overrides)


def test_a_section_that_is_not_a_table_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(SentimentConfig, _toml(tmp_path, 'training = "fast"\n'))


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(SentimentConfig, tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(SentimentConfig, _toml(tmp_path, "[training\nepochs = \n"))
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[data]\ntext_column = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(SentimentConfig, latin)


def test_to_dict_round_trip_and_dotted_replace():
    config = load_config(
        SentimentConfig, None, {"tokenizer.unknown_aliases": ["<unk>"], "model.stack.cell": "gru"}
    )
    values = config_lib.to_dict(config)
    json.dumps(values)  # JSON-ready
    assert config_lib.from_dict(SentimentConfig, values) == config
    changed = config_lib.replace(config, **{"training.epochs": 9, "model.stack.units": 4})
    assert changed.training.epochs == 9 and changed.model.stack.units == 4
    assert changed.model.stack.cell == "gru" and config.training.epochs != 9
    with pytest.raises(ConfigError):
        config_lib.replace(config, **{"model.stack.units": -1})
