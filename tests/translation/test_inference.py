"""Translating and evaluating: the tiny model learns its pairs, BLEU as sacreBLEU's,
decoding options checked, wrong runs and outputs refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SUBPROCESS_TIMEOUT
from textrnn import export, translation
from textrnn.errors import ConfigError, DataError, RunDirError, UserError
from textrnn.translation import TranslationOptions
from textrnn.translation.inference import (
    corpus_scores,
    repeated_ngram_rate,
    translate_texts,
    validate_decoding,
)

from .tiny import PAIRS


@pytest.mark.slow
def test_tiny_model_overfits_twenty_pairs(overfit_run):
    run_dir, metrics = overfit_run
    serving = translation.open_model(run_dir)
    assert isinstance(serving.inference, translation.Translator)
    sources = [s for s, _ in PAIRS]
    for beam in (1, 3):
        results = translate_texts(serving, sources, TranslationOptions(beam_size=beam))
        assert [r.translation for r in results] == [t for _, t in PAIRS]


def test_bleu_matches_sacrebleu_cli(tmp_path):
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


def test_decoding_options_are_validated():
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
    for ngram in (-1, 17):
        with pytest.raises(ConfigError, match=r"--no-repeat-ngram must be in \[0, 16\]"):
            validate_decoding(2, no_repeat_ngram=ngram)
    for bad in (float("nan"), float("inf"), -0.5, 10.5):
        with pytest.raises(ConfigError, match="--coverage-penalty must be a finite number"):
            validate_decoding(2, coverage_penalty=bad)
    validate_decoding(2, no_repeat_ngram=16, coverage_penalty=10.0)
    with pytest.raises(UserError, match="empty"):
        translate_texts(None, [])


def test_repeated_ngram_rate_counts_word_trigrams_seen_before_in_the_same_output():
    looping = "und einer lila und einer lila und einer lila"  # 7 trigrams, 4 seen before
    assert repeated_ngram_rate([looping]) == pytest.approx(4 / 7)
    assert repeated_ngram_rate([looping, "ein Mann fährt Rad ."]) == pytest.approx(4 / 10)
    assert repeated_ngram_rate(["a b c", "a b c"]) == 0.0  # across outputs is no repeat
    assert repeated_ngram_rate(["kurz", ""]) == 0.0


def test_export_and_evaluate_refuse_the_wrong_run_or_an_unwritable_output(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"task": "sentiment"}')
    with pytest.raises(RunDirError, match="holds a 'sentiment' run, not a 'translation' one"):
        export.export_run(run_dir, tmp_path / "out", expected_task="translation")
    assert not (tmp_path / "out").exists()
    (tmp_path / "outdir").mkdir()
    with pytest.raises(DataError, match=r"outdir \(--output\): it is a directory"):
        translation.evaluate(run_dir, "src.txt", "tgt.txt", output=tmp_path / "outdir")
