"""`textrnn translation`: bad input answers with exit code 2 and leaves nothing behind;
`evaluate` reports capped outputs and repeats, and writes its hypotheses."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from helpers import REPO
from textrnn.cli.main import app

from .tiny import PAIRS, write_pairs


def test_cli_reports_mismatched_files_with_exit_code_2(tmp_path):
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


# A tiny trained run (the compatibility fixture's; it loops, as undertrained models do).
TINY_RUN = REPO / "tests" / "fixtures" / "compat" / "translation" / "run"
TINY_DATA = TINY_RUN.parent / "data"


def _evaluate_tiny(run_dir, *flags: str) -> list[str]:
    """`evaluate` of the run on the tiny bundled validation pair, plus `flags`."""
    return [
        "evaluate",
        "--run-dir",
        str(run_dir),
        "--source",
        str(TINY_DATA / "valid.en"),
        "--target",
        str(TINY_DATA / "valid.de"),
        *flags,
    ]


def test_bad_repeat_and_coverage_values_are_one_line_errors(tmp_path):
    shutil.copytree(TINY_RUN, tmp_path / "run")
    for flags, message in (
        (["--no-repeat-ngram", "-1"], "--no-repeat-ngram must be in [0, 16] (0: off), got -1"),
        (["--no-repeat-ngram", "99"], "--no-repeat-ngram must be in [0, 16]"),
        (["--coverage-penalty", "-0.2"], "--coverage-penalty must be a finite number in [0, 10]"),
        (["--coverage-penalty", "nan"], "--coverage-penalty must be a finite number"),
        (["--coverage-penalty", "inf"], "--coverage-penalty must be a finite number"),
    ):
        for command in (
            ["translate", "--model", str(tmp_path / "run"), "A man."],
            _evaluate_tiny(tmp_path / "run", "--output", str(tmp_path / "hypotheses.txt")),
        ):
            result = CliRunner().invoke(app, ["translation", *command, *flags])
            assert result.exit_code == 2, result.output
            assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "hypotheses.txt").exists()


@pytest.mark.slow
def test_evaluate_reports_capped_and_repeats_and_writes_hypotheses(tmp_path):
    shutil.copytree(TINY_RUN, tmp_path / "run")
    output = tmp_path / "hypotheses.txt"
    reports = {}
    for ngram in ("0", "2"):
        result = CliRunner().invoke(
            app,
            [
                "translation",
                *_evaluate_tiny(tmp_path / "run"),
                "--beam-size",
                "1",
                "--no-repeat-ngram",
                ngram,
                "--coverage-penalty",
                "0.2",
                "--output",
                str(output),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        reports[ngram] = json.loads(result.output)
        hypotheses = output.read_text(encoding="utf-8").splitlines()
        assert len(hypotheses) == len((TINY_DATA / "valid.en").read_text().splitlines())
    for report in reports.values():
        assert report["capped_fraction"] == round(report["capped"] / report["sentences"], 4)
        assert 0.0 <= report["repeated_ngram_rate"] <= 1.0
        assert report["coverage_penalty"] == 0.2
    assert reports["2"]["no_repeat_ngram"] == 2
    # The tiny model loops on subwords to the cap ("Mannnnttttt..."); blocking cuts that.
    assert reports["2"]["capped"] < reports["0"]["capped"]
