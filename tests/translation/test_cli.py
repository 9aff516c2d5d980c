"""`textrnn translation`: bad input answers with exit code 2 and leaves nothing behind."""

from __future__ import annotations

from typer.testing import CliRunner

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
