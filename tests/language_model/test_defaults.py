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


def _chosen(tmp_path, text: str, **overrides):
    train = tmp_path / "train.txt"
    train.write_text(text, encoding="utf-8")
    overrides = {"data.train": str(train), "tokenizer.kind": "word", **overrides}
    config = load_config(LanguageModelConfig, None, overrides)
    return choose_defaults(config, given_keys(None, overrides))


def test_a_text_of_short_lines_is_read_line_by_line_and_a_stream_of_paragraphs_is_not(tmp_path):
    verse, lines = _chosen(tmp_path, "But soft, what light through yonder window breaks?\n" * 500)
    assert verse.data.layout == "lines" and "data.layout = lines" in lines[0]
    assert "in 500 lines" in lines[0]
    paragraph = " ".join(["the cat sat on the mat ."] * 40) + "\n\n"  # 280 tokens a line
    book, lines = _chosen(tmp_path, paragraph * 100)
    assert book.data.layout == "continuous" and "data.layout" not in lines[0]
    chars, _ = _chosen(tmp_path, "To be or not to be.\n" * 500, **{"tokenizer.kind": "char"})
    assert chars.data.layout == "continuous"
    carried, _ = _chosen(tmp_path, "To be or not to be.\n" * 500, **{"data.carry_state": True})
    assert carried.data.layout == "continuous"  # carrying states is for a stream


def test_lm_train_without_a_recipe_prints_the_chosen_defaults_first_and_trains_with_them(
    tmp_path,
):
    import json

    from typer.testing import CliRunner

    from textrnn.cli.main import app

    train = tmp_path / "train.txt"
    train.write_text("the cat sat on the mat .\nthe dog sat on a log .\n" * 60, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["lm", "train", "--train", str(train), "--tokenizer", "word", "--epochs", "1"]
        + ["--run-dir", str(run_dir)],
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("defaults for a word model on about 840 tokens in 120 lines")
    assert "data.layout = lines" in first and "training.batch_size = 16" in first
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["data"]["layout"] == "lines" and saved["training"]["batch_size"] == 16
    assert saved["model"]["tie_embeddings"] and saved["model"]["stack"]["units"] == 128


def test_word_models_leave_words_seen_once_out_unless_the_vocabulary_is_chosen(tmp_path):
    text = "the cat sat on the mat .\n" * 50 + "a rare word\n"
    chosen, lines = _chosen(tmp_path, text)
    assert chosen.tokenizer.min_frequency == 2 and "tokenizer.min_frequency = 2" in lines[0]
    sized, _ = _chosen(tmp_path, text, **{"tokenizer.vocabulary_size": 50})
    assert sized.tokenizer.min_frequency == 1
    subword, _ = _chosen(tmp_path, text, **{"tokenizer.kind": "subword"})
    assert subword.tokenizer.min_frequency == 1  # pieces cover every word
