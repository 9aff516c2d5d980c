"""`textrnn <task> export`, `export-litert` and `check-tokenizer`, written once for every task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli import options
from textrnn.cli.runner import command
from textrnn.tasks import TaskEntry

Quantize = Annotated[
    str,
    typer.Option(
        "--quantize",
        help="none (float32) | dynamic (int8 weights, float math) | float16 (float16 weights).",
    ),
]
MaxLength = Annotated[
    int | None,
    typer.Option(
        "--max-length",
        min=1,
        help="The fixed input length: tokens per text (sentiment, default the run's "
        "max_length), per prime call (lm, default 64), source tokens (translation, default "
        "the run's source_max_length).",
    ),
]
LiteRTOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Export base directory; the next version is written (default: litert_models/<task>).",
    ),
]


def add_export_command(app: typer.Typer, entry: TaskEntry, signatures: str) -> None:
    """Register `export`, `export-litert` and `check-tokenizer` on a task's sub-app;
    `signatures` says what the SavedModel serves."""

    def export_command(run_dir: options.RunDirRequired, out: options.OutOption = None) -> None:
        from textrnn import export

        path = export.export_run(run_dir, out, expected_task=entry.name)
        typer.echo(f"exported {path}")

    export_command.__doc__ = (
        f"Write a SavedModel ({signatures}) to the next numeric version under --out."
    )
    app.command("export")(command(export_command))
    add_litert_commands(app, entry)


def add_litert_commands(app: typer.Typer, entry: TaskEntry) -> None:
    """`export-litert` (numeric signatures for ai-edge-litert) and `check-tokenizer`."""

    def export_litert(
        run_dir: options.RunDirRequired,
        out: LiteRTOut = None,
        quantize: Quantize = "none",
        max_length: MaxLength = None,
    ) -> None:
        """Write a LiteRT model (built-in ops only), its vocabularies and manifest to the
        next numeric version under --out; tokenization and search run on the host."""
        from textrnn.edge.convert import export_litert as convert_run

        path = convert_run(run_dir, out, entry.name, quantize, max_length)
        size = (path / "model.tflite").stat().st_size
        typer.echo(f"exported {path} (model.tflite {size / 1e6:.2f} MB, {quantize})")

    def check_tokenizer(
        run_dir: options.RunDirRequired,
        data: Annotated[Path, typer.Option("--data", help="Text file: every line is checked.")],
        encoding: options.EncodingOption = None,
    ) -> None:
        """Check that the host tokenizer (textrnn.edge) gives the in-graph tokenizer's ids
        on every line of --data; exit 1 if any line differs."""
        from textrnn.edge.parity import check_tokenizers

        reports = check_tokenizers(run_dir, data, encoding or "utf-8")
        for report in reports:
            typer.echo(report.summary())
            for line, expected, got in report.examples:
                typer.echo(f"  line {line}: graph {expected[:20]} host {got[:20]}")
        if not all(report.ok for report in reports):
            raise typer.Exit(1)

    app.command("export-litert")(command(export_litert))
    app.command("check-tokenizer")(command(check_tokenizer))
