"""textrnn.cli.lm: `textrnn generate` (batched and streamed, bad options exit 2) and
`textrnn lm evaluate --json`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner


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
