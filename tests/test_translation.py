"""Translation: attention masking, decoding contracts, overfitting, export round trip, BLEU, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import SUBPROCESS_TIMEOUT

SUBJECTS = [
    ("the dog", "der Hund"),
    ("a cat", "eine Katze"),
    ("the man", "der Mann"),
    ("a woman", "eine Frau"),
    ("the child", "das Kind"),
]
VERBS = [("runs", "läuft"), ("sleeps", "schläft"), ("eats", "isst"), ("sings", "singt")]
PAIRS = [(f"{s} {v}", f"{ts} {tv}") for (s, ts) in SUBJECTS for (v, tv) in VERBS]  # 20 pairs


def write_pairs(
    directory: Path, pairs: list[tuple[str, str]], name: str = "train"
) -> tuple[Path, Path]:
    source, target = directory / f"{name}.en", directory / f"{name}.de"
    source.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    target.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return source, target


def tiny_translation_config(directory: Path, **extra):
    from textrnn import translation
    from textrnn.config import load_config

    source, target = write_pairs(directory, PAIRS)
    overrides = {
        "data.source": str(source),
        "data.target": str(target),
        "data.valid_source": str(source),
        "data.valid_target": str(target),
        "data.source_max_length": 8,
        "data.target_max_length": 8,
        "tokenizer.kind": "word",
        "tokenizer.joint": True,
        "tokenizer.vocabulary_size": 64,
        "model.embedding_dim": 16,
        "model.embedding_dropout": 0.0,
        "model.dropout": 0.0,
        "model.label_smoothing": 0.0,
        "model.encoder.units": 16,
        "model.decoder.units": 32,
        "decoding.beam_size": 3,
        "decoding.max_length_offset": 3,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.learning_rate": 0.01,
        "training.seed": 3,
        "training.shuffle_buffer": 20,
    }
    overrides.update(extra)
    return load_config(translation.Config, None, overrides)


def untrained(tmp_path: Path, **extra):
    """A tiny, seeded, untrained model with its tokenizers (no training)."""
    from textrnn import training, translation

    config = tiny_translation_config(tmp_path, **extra)
    training.set_seed(5)
    pairs = translation.read_pairs(config.data.source, config.data.target)
    tokenizers = translation.build_tokenizers(config, tmp_path, pairs)
    model = translation.build_model(config, tokenizers, compile=False)
    return config, tokenizers, model


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_over_unmasked_and_zero_on_padding(kind):
    from textrnn.rnn_stack import make_attention

    rng = np.random.default_rng(0)
    query = rng.normal(size=(3, 4, 6)).astype("float32")
    value = rng.normal(size=(3, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    layer = make_attention(kind, units=8)
    context, weights = layer(query, value, value_mask=mask)
    weights = np.asarray(weights)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[0][:, 3:] == 0.0)
    assert np.all(weights[2] == 0.0)  # nothing to attend to: no weight anywhere
    step_context, step_weights = layer(query[:, 0], value, value_mask=mask)  # one decoding step
    np.testing.assert_allclose(np.asarray(step_weights), weights[:, 0], atol=1e-6)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


# ----------------------------------------------------------------------------- search


def toy_step(vocabulary: int = 7, memory: int = 3, seed: int = 0):
    """A bigram 'model': log-probabilities depend only on the previous token."""
    import tensorflow as tf

    table = tf.nn.log_softmax(tf.random.stateless_normal([vocabulary, vocabulary], [seed, 1]) * 2.0)

    def step(ids, state):
        return tf.gather(table, ids), {"t": state["t"] + 1.0}, tf.zeros([tf.shape(ids)[0], memory])

    return step, table


def test_beam_one_equals_greedy():
    import tensorflow as tf

    from textrnn import sampling

    for seed in range(4):
        step, _ = toy_step(seed=seed)
        state = {"t": tf.zeros([4, 1])}
        limits = tf.constant([6, 8, 3, 10])
        greedy = sampling.greedy_search(step, state, limits, 2, 3, 3, length_penalty=0.6)
        beam = sampling.beam_search(step, state, limits, 1, 2, 3, 3, length_penalty=0.6)
        width = greedy["ids"].shape[1]
        np.testing.assert_array_equal(beam["ids"][:, 0, :width].numpy(), greedy["ids"].numpy())
        np.testing.assert_allclose(beam["score"][:, 0].numpy(), greedy["score"].numpy(), rtol=1e-5)
        np.testing.assert_array_equal(beam["lengths"][:, 0].numpy(), greedy["lengths"].numpy())


def test_beam_hypotheses_sorted_by_length_penalized_score():
    import tensorflow as tf

    from textrnn import sampling

    step, table = toy_step(seed=11)
    alpha = 0.8
    result = sampling.beam_search(
        step, {"t": tf.zeros([2, 1])}, tf.constant([7, 9]), 4, 2, 3, 3, alpha
    )
    scores, ids, lengths = result["score"].numpy(), result["ids"].numpy(), result["lengths"].numpy()
    table = table.numpy()
    for row in range(2):
        assert np.all(np.diff(scores[row]) <= 1e-6), scores[row]
        finished = scores[row] > sampling.NEGATIVE / 2  # unused slots when the search stops early
        assert finished[0]
        for k in np.flatnonzero(finished):
            length = lengths[row, k]
            tokens = [2, *ids[row, k, :length]]
            assert tokens[-1] == 3  # every finished hypothesis ends in EOS
            log_prob = sum(table[a, b] for a, b in zip(tokens[:-1], tokens[1:], strict=False))
            expected = log_prob / ((5.0 + length) / 6.0) ** alpha
            np.testing.assert_allclose(scores[row, k], expected, rtol=1e-4)


def test_output_is_capped_relative_to_source_length():
    import tensorflow as tf

    from textrnn import sampling

    vocabulary = 6
    never_eos = tf.one_hot(4, vocabulary, on_value=0.0, off_value=-20.0)  # always prefers token 4

    def step(ids, state):
        return (
            tf.tile(never_eos[tf.newaxis], [tf.shape(ids)[0], 1]),
            state,
            tf.zeros([tf.shape(ids)[0], 2]),
        )

    limits = tf.constant([2, 5])
    greedy = sampling.greedy_search(step, {"s": tf.zeros([2, 1])}, limits, 2, 3, 2)
    beam = sampling.beam_search(step, {"s": tf.zeros([2, 1])}, limits, 3, 2, 3, 2)
    np.testing.assert_array_equal(greedy["lengths"].numpy(), [2, 5])
    np.testing.assert_array_equal(beam["lengths"][:, 0].numpy(), [2, 5])
    assert greedy["ids"].numpy()[0].tolist()[:2] == [4, 3]  # forced EOS at the cap


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "input_feeding, attention", [(True, "general"), (False, "additive"), (True, "dot")]
)
def test_step_by_step_decoding_matches_teacher_forcing(tmp_path, input_feeding, attention):
    import tensorflow as tf

    from textrnn import translation

    extra = {"model.input_feeding": input_feeding, "model.attention": attention}
    if attention == "dot":
        extra["model.decoder.units"] = 32  # = 2 * encoder units
    config, (source_tokenizer, target_tokenizer), model = untrained(tmp_path, **extra)
    translator = translation.Translator(config, source_tokenizer, target_tokenizer, model)
    source = source_tokenizer.encode_padded(tf.constant(["the dog runs", "a cat"]), 8)
    target = target_tokenizer.encode_padded(tf.constant(["der Hund läuft", "eine Katze"]), 8)
    target_in = tf.concat([tf.fill([2, 1], 2), target], axis=1)  # [BOS] ...
    logits = model({"source_ids": source, "target_ids": target_in}, training=False).numpy()
    memory, mask, states = translator.encode(source)
    decoder = translator.decoder
    processed = decoder.process_memory(memory)
    state = {"states": states, "feed": decoder.initial_feed(memory)}
    for t in range(3):  # the first sentence's real steps
        log_probs, state, _ = decoder.step(target_in[:, t], state, memory, processed, mask)
        expected = tf.nn.log_softmax(logits[:, t]).numpy()
        np.testing.assert_allclose(log_probs.numpy()[0], expected[0], atol=1e-4)


def test_translator_beam_one_is_greedy_and_beam_returns_sorted_n_best(tmp_path):
    import tensorflow as tf

    from textrnn import sampling, translation

    config, (source_tokenizer, target_tokenizer), model = untrained(tmp_path)
    translator = translation.Translator(config, source_tokenizer, target_tokenizer, model)
    sources = tf.constant(["the dog runs", "a woman sings", ""])
    ids = source_tokenizer.encode_padded(sources, 8)
    memory, mask, states = translator.encode(ids)
    decoder = translator.decoder
    processed = decoder.process_memory(memory)

    def step(previous, state):
        return decoder.step(previous, state, memory, processed, mask)

    state = {"states": states, "feed": decoder.initial_feed(memory)}
    limits = tf.constant([6, 6, 6])
    greedy = sampling.greedy_search(step, state, limits, 2, 3, tf.shape(memory)[1], 0.6)
    beam = sampling.beam_search(step, state, limits, 1, 2, 3, tf.shape(memory)[1], 0.6)
    width = greedy["ids"].shape[1]
    np.testing.assert_array_equal(beam["ids"][:, 0, :width].numpy(), greedy["ids"].numpy())
    out = translator.translate(sources, 4, 0, 0.6, 1.5)
    scores = out["hypothesis_scores"].numpy()
    assert out["hypotheses"].shape == (3, 4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert out["attention"].shape[0] == 3
    empty = translator.translate(tf.constant([], tf.string), 4, 0, 0.6, 1.5)
    assert empty["translation"].shape == (0,)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    from textrnn import training, translation

    directory = tmp_path_factory.mktemp("translation")
    source, target = write_pairs(
        directory, PAIRS * 8, name="repeated"
    )  # few epochs, little callback overhead
    # Static shapes: one batch shape, so the recurrent loops compile once.
    config = tiny_translation_config(
        directory,
        **{
            "data.source": str(source),
            "data.target": str(target),
            "training.epochs": 8,
            "training.batch_size": 8,
            "training.lr_schedule": "constant",
            "training.static_shapes": True,
        },
    )
    run_dir = directory / "run"
    metrics = training.train(translation, config, run_dir, echo=lambda line: None, verbose=0)
    return run_dir, metrics


@pytest.mark.slow
def test_tiny_model_overfits_twenty_pairs(overfit_run):
    from textrnn import translation

    run_dir, metrics = overfit_run
    serving = translation.open_model(run_dir)
    sources = [s for s, _ in PAIRS]
    for beam in (1, 3):
        results = translation.translate_texts(serving, sources, beam_size=beam)
        assert [r.translation for r in results] == [t for _, t in PAIRS]


@pytest.mark.slow
def test_export_reloads_in_a_fresh_process_after_the_run_is_deleted(overfit_run, tmp_path):
    from textrnn import export, translation

    run_dir = tmp_path / "run"
    shutil.copytree(overfit_run[0], run_dir)
    sources = [s for s, _ in PAIRS[:6]] + ["an unseen ünïcode sentence !"]
    in_process = translation.translate_texts(translation.open_model(run_dir), sources, beam_size=3)
    path = export.export_run(run_dir, tmp_path / "exports")
    shutil.rmtree(run_dir)
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "src = tf.constant(json.loads(sys.argv[2]))\n"
        "d = m.signatures['serving_default'](source=src)\n"
        "t = m.signatures['translate'](source=src, beam_size=tf.constant(3), max_length=tf.constant(0))\n"
        "print(json.dumps({'default': [x.decode() for x in d['translation'].numpy()],\n"
        "  'translate': [x.decode() for x in t['translation'].numpy()],\n"
        "  'attention': list(t['attention'].shape)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(sources)],
        capture_output=True,
        text=True,
        timeout=3 * SUBPROCESS_TIMEOUT,
        check=True,  # traces two searches
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [r.translation for r in in_process]
    assert loaded["default"] == expected
    assert loaded["translate"] == expected
    assert loaded["attention"][0] == len(sources)


# ----------------------------------------------------------------------------- metrics


def test_bleu_matches_sacrebleu_cli(tmp_path):
    from textrnn.translation import corpus_scores

    hypotheses = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee", "Eine Frau singt."]
    references = [
        "Ein Mann fährt Fahrrad.",
        "Zwei Hunde spielen im Schnee.",
        "Eine Frau singt ein Lied.",
    ]
    (tmp_path / "hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    (tmp_path / "ref").write_text("\n".join(references) + "\n", encoding="utf-8")
    scores = corpus_scores(hypotheses, references)
    cli = Path(sys.executable).parent / "sacrebleu"
    result = subprocess.run(
        [
            str(cli),
            str(tmp_path / "ref"),
            "-i",
            str(tmp_path / "hyp"),
            "-m",
            "bleu",
            "chrf",
            "-b",
            "-w",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=True,
    )
    bleu, chrf = json.loads(result.stdout)  # `-b` with two metrics prints a JSON list
    assert scores["bleu"] == pytest.approx(bleu, abs=0.01)
    assert scores["chrf"] == pytest.approx(chrf, abs=0.01)


def test_detokenize_punctuation():
    import tensorflow as tf

    from textrnn.translation import detokenize_punctuation

    out = detokenize_punctuation(tf.constant(["Ein Mann ( mit T - Shirt ) , der läuft ."]))
    assert out.numpy()[0].decode() == "Ein Mann (mit T-Shirt), der läuft."


# ----------------------------------------------------------------------------- bad input and config


def test_line_count_mismatch_names_both_counts(tmp_path):
    from textrnn.errors import DataError
    from textrnn.translation import read_pairs

    source, target = write_pairs(tmp_path, PAIRS[:4])
    target.write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match="4 lines but .* has 2"):
        read_pairs(str(source), str(target))


def test_empty_lines_are_skipped_and_counted(tmp_path):
    from textrnn.translation import read_pairs

    source, target = write_pairs(tmp_path, [("a b", "x y"), ("", "z"), ("c", ""), ("d", "w")])
    pairs = read_pairs(str(source), str(target))
    assert pairs.sources == ["a b", "d"] and pairs.skipped_empty == 2
    assert "skipped 2 pair(s)" in pairs.notes[0]


def test_decoding_options_are_validated():
    from textrnn.errors import ConfigError, UserError
    from textrnn.translation import translate_texts, validate_decoding

    with pytest.raises(ConfigError, match="--beam-size"):
        validate_decoding(0)
    with pytest.raises(ConfigError, match="--beam-size"):
        validate_decoding(-2)
    with pytest.raises(ConfigError, match="--n-best"):
        validate_decoding(2, n_best=3)
    with pytest.raises(ConfigError, match=r"--beam-size must be in \[1, 64\]"):
        validate_decoding(65)
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ConfigError, match="--length-penalty must be a finite number"):
            validate_decoding(2, length_penalty=bad)
        with pytest.raises(ConfigError, match="--max-length-ratio must be a finite number"):
            validate_decoding(2, max_length_ratio=bad)
    with pytest.raises(UserError, match="empty"):
        translate_texts(None, [])


def test_served_beam_size_is_bounded_in_the_graph(tmp_path):
    """The export's `translate` signature takes beam_size from requests: a huge one fails
    at once with a message naming the bound, instead of decoding for minutes."""
    import tensorflow as tf

    from textrnn import translation
    from textrnn.config import MAX_BEAM_SIZE
    from textrnn.serving import first_line

    config, (source_tokenizer, target_tokenizer), model = untrained(tmp_path)
    translator = translation.Translator(config, source_tokenizer, target_tokenizer, model)
    for beam, message in ((MAX_BEAM_SIZE + 1, "beam_size must be <= 64"), (0, ">= 1")):
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            translator.translate(tf.constant(["the dog runs"]), beam, 0, 0.6, 1.5)
        assert message in first_line(raised.value)  # what the server answers with its 400


def test_export_and_evaluate_refuse_the_wrong_run_or_an_unwritable_output(tmp_path):
    from textrnn import export, translation
    from textrnn.errors import DataError, RunDirError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"task": "sentiment"}')
    with pytest.raises(RunDirError, match="holds a 'sentiment' run, not a 'translation' one"):
        export.export_run(run_dir, tmp_path / "out", expected_task="translation")
    assert not (tmp_path / "out").exists()
    (tmp_path / "outdir").mkdir()
    with pytest.raises(DataError, match=r"outdir \(--output\): it is a directory"):
        translation.evaluate(run_dir, "src.txt", "tgt.txt", output=tmp_path / "outdir")


def test_partial_config_tables_keep_translation_defaults(tmp_path):
    from textrnn import translation
    from textrnn.config import load_config
    from textrnn.errors import ConfigError

    recipe = tmp_path / "r.toml"
    recipe.write_text("[model.encoder]\nunits = 32\n[training]\nepochs = 2\n", encoding="utf-8")
    config = load_config(translation.Config, recipe)
    assert config.model.encoder.bidirectional and config.model.encoder.cell == "gru"
    assert config.model.encoder.units == 32 and config.training.jit_compile == "false"
    with pytest.raises(ConfigError, match="decoder.bidirectional"):
        load_config(translation.Config, None, {"model.decoder.bidirectional": True})
    for name in ("config.toml", "multi30k.toml"):  # the shipped recipes parse
        load_config(translation.Config, Path(__file__).parents[1] / "tasks" / "translation" / name)


def test_cli_reports_mismatched_files_with_exit_code_2(tmp_path):
    from typer.testing import CliRunner

    from textrnn.cli.main import app

    source, target = write_pairs(tmp_path, PAIRS[:3])
    target.write_text("eins\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "translation",
            "train",
            "--source",
            str(source),
            "--target",
            str(target),
            "--run-dir",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2
    assert "3 lines" in result.output and "has 1" in result.output
    assert not (tmp_path / "r").exists()  # the failed new run leaves no directory behind
    result = CliRunner().invoke(
        app, ["translation", "translate", "--model", str(tmp_path / "nope"), "hi"]
    )
    assert result.exit_code == 2
