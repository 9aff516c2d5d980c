"""Language model task: batching, evaluation, in-graph generation, export, CLI, bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import PYTHON, SUBPROCESS_TIMEOUT, subprocess_env
from typer.testing import CliRunner

from textrnn import export, training
from textrnn import language_model as lm_lib
from textrnn.config import LanguageModelConfig, load_config
from textrnn.errors import ConfigError, DataError
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID

TEXT = "".join(f"the cat sat on mat {i % 7}.\nto be or not to be.\n" for i in range(60))


def lm_overrides(train: Path, **extra) -> dict:
    values = {
        "data.train": str(train),
        "data.seq_len": 16,
        "model.embedding_dim": 8,
        "model.stack.units": 8,
        "model.stack.num_layers": 2,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.seed": 3,
        "training.jit_compile": "false",
    }
    values.update(extra)
    return values


def train_lm(run_dir: Path, train: Path, **extra) -> LanguageModelConfig:
    config = load_config(LanguageModelConfig, None, lm_overrides(train, **extra))
    training.train(lm_lib, config, run_dir, restart=True, echo=lambda line: None, verbose=0)
    return config


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "train.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def char_run(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-layer character LSTM with carried state, trained one epoch (read-only)."""
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    train_lm(run_dir, corpus_file, **{"data.carry_state": True, "model.tie_embeddings": True})
    return run_dir


@pytest.fixture(scope="module")
def char_lm(char_run: Path) -> lm_lib.LanguageModel:
    return lm_lib.inference_model(*lm_lib.load_run(char_run))


def generate(signature, prompts, max_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=7):
    outputs = signature(
        prompt=tf.constant(prompts),
        max_tokens=tf.constant(max_tokens, tf.int32),
        temperature=tf.constant(temperature, tf.float32),
        top_k=tf.constant(top_k, tf.int32),
        top_p=tf.constant(top_p, tf.float32),
        seed=tf.constant(seed, tf.int64),
    )
    return [t.decode("utf-8") for t in outputs["text"].numpy()]


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize(
    "tokens, batch, seq_len", [(1, 1, 1), (100, 4, 7), (101, 3, 10), (37, 8, 5), (64, 8, 8)]
)
def test_contiguous_batching_covers_every_token_once(tokens: int, batch: int, seq_len: int) -> None:
    targets = np.arange(10, 10 + tokens, dtype=np.int32)  # distinct, never 0
    inputs = np.concatenate([[BOS_ID], targets[:-1]]).astype(np.int32)
    batches = lm_lib.contiguous_batches(inputs, targets, batch, seq_len)
    seen = np.concatenate([y.ravel() for _, y in batches])
    seen = seen[seen != PAD_ID]
    np.testing.assert_array_equal(np.sort(seen), targets)  # each exactly once
    for x, y in batches:
        assert x.shape == y.shape == (batch, seq_len)
        real = y != PAD_ID
        np.testing.assert_array_equal(x != PAD_ID, real)  # an input for every target
    # Row r of batch k + 1 continues row r of batch k.
    rows = np.concatenate([y for _, y in batches], axis=1)
    for row in rows:
        real = row[row != PAD_ID]
        np.testing.assert_array_equal(np.diff(real), np.ones(len(real) - 1))


def test_encode_corpus_layouts() -> None:
    from textrnn.config import TokenizerConfig
    from textrnn.tokenizers import build_tokenizer

    tokenizer = build_tokenizer(
        TokenizerConfig(kind="word"), ["a b c"], Path(pytest.TempPathFactory.__name__)
    )
    shutil.rmtree(pytest.TempPathFactory.__name__)
    stream = lm_lib.encode_corpus(tokenizer, "a b\nc\n", "continuous")
    assert stream.inputs[0][0] == BOS_ID and stream.num_tokens == 3
    lines = lm_lib.encode_corpus(tokenizer, "a b\n\nc\n", "lines")
    assert lines.skipped_empty == 1 and lines.num_tokens == 5  # a b [EOS] c [EOS]
    assert all(t[-1] == EOS_ID for t in lines.targets)


# ----------------------------------------------------------------------------- evaluation


def test_uniform_model_perplexity_is_the_vocabulary_size(char_run: Path) -> None:
    config, tokenizer, model = lm_lib.load_run(char_run)
    embedding = model.get_layer("embedding")
    embedding.embeddings.assign(tf.zeros_like(embedding.embeddings))  # tied: logits = 0 + bias
    embedding.output_bias.assign(tf.zeros_like(embedding.output_bias))
    lm = lm_lib.inference_model(config, tokenizer, model)
    corpus = lm_lib.encode_corpus(tokenizer, TEXT[:500], "continuous")
    metrics = lm_lib.evaluate_corpus(lm, corpus, batch_size=3)
    assert metrics["tokens"] == 500
    assert metrics["perplexity"] == pytest.approx(tokenizer.vocabulary_size, rel=1e-4)
    assert metrics["bits_per_character"] == pytest.approx(
        math.log2(tokenizer.vocabulary_size), rel=1e-4
    )


def test_evaluate_counts_every_token_and_matches_score(
    char_run: Path, char_lm, corpus_file: Path
) -> None:
    metrics = lm_lib.evaluate(char_run, str(corpus_file), batch_size=1)
    assert metrics["tokens"] == len(TEXT) and metrics["characters"] == len(TEXT)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nats_per_token"]))
    # One stream, one row: the same as scoring the whole text as one line.
    scored = lm_lib.serving_signatures(char_lm)["score"](text=tf.constant([TEXT]))
    assert float(scored["num_tokens"][0]) == len(TEXT)
    assert -float(scored["log_likelihood"][0]) / len(TEXT) == pytest.approx(
        metrics["nats_per_token"], rel=1e-4
    )
    # More rows only add cold starts: every token is still counted.
    assert lm_lib.evaluate(char_run, str(corpus_file), batch_size=7)["tokens"] == len(TEXT)


# ----------------------------------------------------------------------------- generation


def test_in_graph_loop_equals_step_by_step(char_run: Path) -> None:
    serving = export.load_serving(char_run, expected_task="lm")
    options = lm_lib.GenerationOptions(
        max_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=5, num_samples=2
    )
    batched = lm_lib.generate_texts(serving, ["to be", "the"], options)
    for row, (prompt, text) in enumerate(batched):
        streamed = "".join(lm_lib.stream_tokens(serving, prompt, options, row=row))
        assert streamed == text
    assert len({text for _, text in batched}) > 1


def test_same_seed_same_text_and_greedy_is_deterministic(char_lm) -> None:
    signature = lm_lib.serving_signatures(char_lm)["generate"]
    first = generate(signature, ["to be", ""], seed=1)
    assert first == generate(signature, ["to be", ""], seed=1)
    assert first != generate(signature, ["to be", ""], seed=2)
    greedy = generate(signature, ["to be"], temperature=0.0, seed=1)
    assert greedy == generate(signature, ["to be"], temperature=0.0, seed=99)
    assert greedy == generate(signature, ["to be"], top_k=1, seed=3)
    assert greedy == generate(signature, ["to be"], top_p=1e-7, seed=4)
    assert all(len(t) == 20 for t in first)  # continuous: no [EOS], max_tokens characters
    assert generate(signature, ["x"], max_tokens=0) == [""]


def test_lines_model_stops_at_eos(corpus_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "lines"
    train_lm(run_dir, corpus_file, **{"data.layout": "lines", "tokenizer.kind": "word"})
    config, tokenizer, model = lm_lib.load_run(run_dir)
    logits = model.get_layer("logits")
    bias = np.zeros(tokenizer.vocabulary_size, np.float32)
    bias[EOS_ID] = 1e4  # force [EOS]
    logits.set_weights([np.zeros_like(logits.get_weights()[0]), bias])
    signature = lm_lib.serving_signatures(lm_lib.inference_model(config, tokenizer, model))[
        "generate"
    ]
    assert generate(signature, ["the cat", ""], max_tokens=50) == ["", ""]
    metrics = lm_lib.evaluate(run_dir, str(corpus_file))
    words = len(TEXT.replace(".", " .").split())  # the script split separates punctuation
    assert metrics["tokens"] == words + TEXT.count("\n")  # words + one [EOS] a line


def test_step_signature_shapes(char_lm) -> None:
    signatures = lm_lib.serving_signatures(char_lm)
    primed = signatures["tokenize"](text=tf.constant(["ab", ""]))
    assert primed["token_ids"].shape[0] == 2 and list(primed["lengths"].numpy()) == [3, 1]
    out = signatures["step"](
        token_ids=tf.constant([BOS_ID, BOS_ID]), states=primed["initial_states"]
    )
    assert out["logits"].shape == (2, char_lm.vocabulary_size)
    assert out["states"].shape == (2, 4, 8)  # 2 layers x (h, c), 8 units


# ----------------------------------------------------------------------------- export


def test_export_reloads_in_a_fresh_process_without_the_run(char_run: Path, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(char_run, run_copy)
    serving = export.load_serving(run_copy)
    options = lm_lib.GenerationOptions(max_tokens=25, temperature=0.9, top_k=5, top_p=0.95, seed=42)
    expected = [
        text for _, text in lm_lib.generate_texts(serving, ["to be", "", "zz\u00e9"], options)
    ]
    expected_score = serving.signatures["score"](text=tf.constant(["the cat"]))[
        "log_likelihood"
    ].numpy()
    version = export.export_run(run_copy, tmp_path / "exports")
    shutil.rmtree(run_copy)
    script = f"""
import json, tensorflow as tf, tensorflow_text  # noqa: F401
loaded = tf.saved_model.load({str(version)!r})
gen = loaded.signatures["serving_default"]
out = gen(prompt=tf.constant(["to be", "", "zz\\u00e9"]), max_tokens=tf.constant(25), temperature=tf.constant(0.9),
          top_k=tf.constant(5), top_p=tf.constant(0.95), seed=tf.constant(42, tf.int64))
score = loaded.signatures["score"](text=tf.constant(["the cat"]))
print(json.dumps({{"text": [t.decode() for t in out["text"].numpy()],
                  "score": float(score["log_likelihood"].numpy()[0]),
                  "signatures": sorted(loaded.signatures)}}))
"""
    result = subprocess.run(
        [PYTHON, "-c", script],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["text"] == expected
    assert reloaded["score"] == pytest.approx(float(expected_score[0]), rel=1e-5)
    assert {"serving_default", "generate", "score", "step"} <= set(reloaded["signatures"])
    # `textrnn generate` on the export, batched and streamed through `step`: the same text.
    from textrnn.cli.main import app

    args = [
        "generate",
        "--model",
        str(version),
        "--prompt",
        "to be",
        "--max-tokens",
        "25",
        "--temperature",
        "0.9",
        "--top-k",
        "5",
        "--top-p",
        "0.95",
        "--seed",
        "42",
    ]
    for extra in ([], ["--stream"]):
        result = CliRunner().invoke(app, args + extra)
        assert result.exit_code == 0, result.output
        assert result.output == "to be" + expected[0] + "\n"


# ----------------------------------------------------------------------------- CLI and bad input


def test_cli_generate_and_bad_options(char_run: Path) -> None:
    from textrnn.cli.main import app

    runner = CliRunner()
    args = [
        "generate",
        "--model",
        str(char_run),
        "--prompt",
        "to be",
        "--max-tokens",
        "15",
        "--seed",
        "3",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("to be") and first.output == runner.invoke(app, args).output
    streamed = runner.invoke(app, [*args, "--stream"])
    assert streamed.exit_code == 0 and streamed.output == first.output
    unseen = runner.invoke(
        app, ["generate", "--model", str(char_run), "--prompt", "QQ", "--max-tokens", "3"]
    )
    assert unseen.exit_code == 0 and "2 prompt token(s) unseen" in unseen.output
    for flag, value, option in [
        ("--temperature", "-1", "--temperature"),
        ("--top-p", "0", "--top-p"),
        ("--top-p", "1.5", "--top-p"),
        ("--top-k", "-2", "--top-k"),
        ("--top-k", "100000", "--top-k"),
        ("--max-tokens", "1000000", "--max-tokens"),
    ]:
        result = runner.invoke(app, ["generate", "--model", str(char_run), flag, value])
        assert result.exit_code == 2, (flag, result.output)
        assert option in result.output and result.output.count("\n") == 1


def test_cli_evaluate_json(char_run: Path, corpus_file: Path) -> None:
    from textrnn.cli.main import app

    result = CliRunner().invoke(
        app, ["lm", "evaluate", "--run-dir", str(char_run), "--data", str(corpus_file), "--json"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert {"nats_per_token", "perplexity", "bits_per_character", "tokens"} <= set(metrics)


def test_training_file_shorter_than_one_sequence(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("tiny text\n", encoding="utf-8")
    with pytest.raises(DataError, match="--seq-len"):
        train_lm(tmp_path / "run", short)


def test_binary_training_file_is_rejected(tmp_path: Path) -> None:
    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    with pytest.raises(DataError, match="binary"):
        train_lm(tmp_path / "run", binary)


def test_bad_config_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="data.layout"):
        load_config(LanguageModelConfig, None, {"data.layout": "paragraphs"})
    with pytest.raises(ConfigError, match="carry_state"):
        load_config(LanguageModelConfig, None, {"data.layout": "lines", "data.carry_state": True})
    with pytest.raises(ConfigError, match="bidirectional"):
        load_config(LanguageModelConfig, None, {"model.stack.bidirectional": True})


def test_word_model_with_unk_aliases(tmp_path: Path) -> None:
    text = "".join(f"the <unk> said {w} to the <unk> .\n" for w in ["yes", "no", "maybe"] * 20)
    train = tmp_path / "ptb.txt"
    train.write_text(text, encoding="utf-8")
    run_dir = tmp_path / "word"
    train_lm(
        run_dir,
        train,
        **{
            "data.layout": "lines",
            "tokenizer.kind": "word",
            "tokenizer.split": "whitespace",
            "tokenizer.unknown_aliases": ["<unk>"],
            "tokenizer.vocabulary_size": 10000,
        },
    )
    vocabulary = (run_dir / "vocab.txt").read_text().split("\n")
    assert "<unk>" not in vocabulary
    metrics = lm_lib.evaluate(run_dir, str(train))
    assert metrics["unknown_tokens"] == 2 * 60
    assert metrics["tokens"] == 60 * 9  # 8 words + [EOS] per line


# ----------------------------------------------------------------------------- transfer to sentiment


@pytest.fixture(scope="module")
def phrase_lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A one-layer word LM (embedding 8, 4 units) on the tiny sentiment phrases."""
    from helpers import sentiment_rows

    base = tmp_path_factory.mktemp("phrase_lm")
    rows = sentiment_rows(40, seed=1)
    text_file = base / "text.txt"
    text_file.write_text("".join(text + "\n" for text, _ in rows), encoding="utf-8")
    train_lm(
        base / "lm",
        text_file,
        **{
            "data.layout": "lines",
            "tokenizer.kind": "word",
            "model.embedding_dim": 8,
            "model.stack.units": 4,
            "model.stack.num_layers": 1,
        },
    )
    return base / "lm", rows


def test_sentiment_init_from_copies_embedding_and_stack(phrase_lm, tmp_path: Path) -> None:
    from helpers import write_tsv

    from textrnn import sentiment

    lm_run, rows = phrase_lm
    _, lm_tokenizer, lm_model = lm_lib.load_run(lm_run)
    train_tsv = write_tsv(tmp_path / "train.tsv", rows)
    run_dir = tmp_path / "sentiment"
    config = load_config(
        sentiment.Config,
        None,
        {
            "data.train": str(train_tsv),
            "model.embedding_dim": 8,
            "model.stack.units": 4,
            "model.init_from": str(lm_run),
        },
    )
    sentiment.copy_tokenizer(lm_run, run_dir)
    tokenizer = sentiment.Tokenizer.load(run_dir)
    assert tokenizer.vocabulary == lm_tokenizer.vocabulary
    model = sentiment.build_model(config, tokenizer, init_from=str(lm_run), compile=False)
    np.testing.assert_array_equal(
        model.get_layer("embedding").get_weights()[0],
        lm_model.get_layer("embedding").get_weights()[0],
    )
    ours = model.get_layer("rnn_stack").recurrent_layers[0].get_weights()
    for a, b in zip(
        ours, lm_model.get_layer("rnn_stack").recurrent_layers[0].get_weights(), strict=False
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sentiment_train_init_from_end_to_end(phrase_lm, tmp_path: Path) -> None:
    from helpers import train_tiny, write_tsv

    lm_run, rows = phrase_lm
    train_tsv = write_tsv(tmp_path / "train.tsv", rows)
    run_dir = tmp_path / "sentiment"
    metrics = train_tiny(
        run_dir / "full",
        train_tsv,
        **{"model.embedding_dim": 8, "model.stack.units": 4, "model.init_from": str(lm_run)},
    )
    assert "val_accuracy" in metrics
    assert (run_dir / "full" / "vocab.txt").read_text() == (lm_run / "vocab.txt").read_text()
    with pytest.raises(ConfigError, match="model.stack.units"):
        train_tiny(
            run_dir / "bad",
            train_tsv,
            **{"model.embedding_dim": 8, "model.stack.units": 6, "model.init_from": str(lm_run)},
        )
