"""`textrnn <task> export`, written once for every task in the task table."""

from __future__ import annotations

import typer

from textrnn.cli import options
from textrnn.cli.runner import command
from textrnn.tasks import TaskEntry


def add_export_command(app: typer.Typer, entry: TaskEntry, signatures: str) -> None:
    """Register `export` on a task's sub-app; `signatures` says what the SavedModel serves."""

    def export_command(run_dir: options.RunDirRequired, out: options.OutOption = None) -> None:
        from textrnn import export

        path = export.export_run(run_dir, out, expected_task=entry.name)
        typer.echo(f"exported {path}")

    export_command.__doc__ = (
        f"Write a SavedModel ({signatures}) to the next numeric version under --out."
    )
    app.command("export")(command(export_command))
