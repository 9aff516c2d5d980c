"""`textrnn plot`: training curves (loss and the task's metric per epoch) as a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli.runner import command

RunDirs = Annotated[
    list[Path],
    typer.Option(
        "--run-dir",
        help="A training run directory; repeat it to draw several runs on one figure.",
    ),
]
PlotOut = Annotated[Path, typer.Option("--out", help="The picture to write (.png, .svg or .pdf).")]


@command
def plot(run_dirs: RunDirs, out: PlotOut = Path("curves.png")) -> None:
    """Draw loss and the task's metric per epoch, training and validation, from the runs' logs."""
    from textrnn.training.curves import plot_curves
    from textrnn.training.history import read_history

    histories = [read_history(run_dir) for run_dir in run_dirs]
    path = plot_curves(histories, out)
    epochs = ", ".join(f"{h.run_dir}: {h.epochs} epoch(s)" for h in histories)
    typer.echo(f"training curves drawn in {path} ({epochs})")
