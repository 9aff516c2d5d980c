"""Training curves as a picture: loss and the task's metric per epoch, train and validation.

matplotlib is an optional dependency (`pip install textrnn[plot]`). One figure
holds any number of runs (one colour each; training solid, validation
dashed), so runs can be compared. The panels are the loss and every other
metric the runs logged (sentiment: accuracy); a run whose only measure is its
cross-entropy loss (language model, translation) gets `exp(loss)`, its
perplexity, as the second panel.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from textrnn.errors import DataError, UserError
from textrnn.fileio import atomic_path, check_output_file
from textrnn.training.history import RunHistory

FORMATS = (".png", ".svg", ".pdf")
PERPLEXITY = "perplexity"  # derived: exp(loss)
LINE_STYLES = {"train": ("-", "o"), "validation": ("--", "s")}


def plot_curves(histories: list[RunHistory], path: str | os.PathLike) -> Path:
    """Draw `histories` into `path` (written whole or not at all); return the path."""
    path = check_output_file(path, "--out")
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"--out {path}: the file name must end in {', '.join(FORMATS)}")
    pyplot = _pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = _panels(histories)
    figure, axes_row = pyplot.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False
    )
    labels = _run_labels(histories)
    colours = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    for axes, metric in zip(axes_row[0], panels, strict=True):
        for index, history in enumerate(histories):
            for split, (line, marker) in LINE_STYLES.items():
                epochs, values = _series(history, split, metric)
                if not epochs:
                    continue
                name = split if len(histories) == 1 else f"{labels[index]} ({split})"
                axes.plot(
                    epochs,
                    values,
                    linestyle=line,
                    marker=marker,
                    markersize=3.5,
                    color=colours[index % len(colours)],
                    label=name,
                )
        axes.set_title(metric if metric != PERPLEXITY else "perplexity (exp loss)")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize="small")
    title = str(histories[0].run_dir) if len(histories) == 1 else f"{len(histories)} runs"
    tasks = sorted({history.task for history in histories})
    figure.suptitle(f"{title}: {', '.join(tasks)}")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    pyplot.close(figure)
    return path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("textrnn plot needs matplotlib: pip install 'textrnn[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as pyplot

    return pyplot


def _panels(histories: list[RunHistory]) -> list[str]:
    """`loss`, then the other metrics any run logged, or else the derived perplexity."""
    metrics = {name for history in histories for name in history.metrics()} - {"loss"}
    return ["loss", *(sorted(metrics) or [PERPLEXITY])]


def _series(history: RunHistory, split: str, metric: str) -> tuple[list[int], list[float]]:
    if metric == PERPLEXITY:
        if len(history.metrics()) > 1:
            return [], []  # it logs a metric of its own, drawn in that metric's panel
        epochs, losses = history.series(split, "loss")
        return epochs, [math.exp(min(loss, 700.0)) for loss in losses]  # exp overflows past 709
    return history.series(split, metric)


def _run_labels(histories: list[RunHistory]) -> list[str]:
    """Each run's directory name, or its whole path where two names are the same."""
    names = [history.run_dir.name or str(history.run_dir) for history in histories]
    return [
        name if names.count(name) == 1 else str(history.run_dir)
        for name, history in zip(names, histories, strict=True)
    ]
