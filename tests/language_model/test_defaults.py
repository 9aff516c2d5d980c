"""Defaults chosen per tokenizer kind and corpus size, only for the keys nobody set."""

from __future__ import annotations

from textrnn.config import given_keys, load_config
from textrnn.language_model.config import LanguageModelConfig
from textrnn.language_model.defaults import choose_defaults, suggested


def test_word_models_get_the_word_recipe_shape_and_a_batch_for_100_steps():
    values = suggested("word", 300_000)
    assert values["model.stack.num_layers"] == 2 and values["model.stack.units"] == 256
    assert values["model.tie_embeddings"] and values["model.embedding_dim"] == 256
    assert values["training.lr_schedule"] == "cosine"
    assert values["training.batch_size"] == 32  # 300,000 / (32 x 64) >= 100 steps, 64 is not
    assert suggested("word", 10_000_000)["training.batch_size"] == 64
    assert suggested("word", 20_000)["model.stack.num_layers"] == 1
    assert suggested("word", 20_000)["training.batch_size"] == 16


def test_char_models_keep_long_windows_and_no_word_dropouts():
    values = suggested("char", 1_000_000)
    assert values["data.seq_len"] == 100 and "model.tie_embeddings" not in values
    assert values["model.stack.units"] == 256


def test_only_keys_nobody_set_are_chosen_and_the_choice_is_printed(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("the cat sat on the mat .\n" * 8000, encoding="utf-8")
    overrides = {
        "data.train": str(train),
        "tokenizer.kind": "word",
        "training.batch_size": 8,
        "model.stack.units": 64,
        "training.epochs": None,
    }
    config = load_config(LanguageModelConfig, None, overrides)
    given = given_keys(None, overrides)
    assert given == {"data.train", "tokenizer.kind", "training.batch_size", "model.stack.units"}
    chosen, lines = choose_defaults(config, given)
    assert chosen.training.batch_size == 8 and chosen.model.stack.units == 64  # kept
    assert chosen.data.seq_len == 64 and chosen.training.lr_schedule == "cosine"
    assert not chosen.model.tie_embeddings  # widths were set by hand: no tying imposed
    assert len(lines) == 1 and "word model on about 56,000 tokens" in lines[0]
    assert "data.seq_len = 64" in lines[0] and "batch_size" not in lines[0]


def test_given_keys_reads_the_recipe_tables(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nembedding_dim = 8\n[model.stack]\ncell = "gru"\n')
    assert given_keys(recipe, {"training.seed": 1}) == {
        "model.embedding_dim",
        "model.stack.cell",
        "training.seed",
    }
