"""Attention heatmaps (matplotlib, an optional dependency: `pip install textrnn[plot]`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from textrnn.errors import UserError

if TYPE_CHECKING:
    from textrnn.translation.inference import Translation


def plot_attention(item: Translation, path: str | os.PathLike) -> Path:
    """Draw one sentence's attention matrix as a heatmap: source across, target down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if item.attention is None:
        raise UserError("no attention weights to plot")
    weights = item.attention  # (target tokens, source tokens)
    width = max(4.0, 0.45 * len(item.source_tokens) + 1.5)
    height = max(3.0, 0.4 * len(item.target_tokens) + 1.5)
    figure, axes = plt.subplots(figsize=(width, height))
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(item.source_tokens)), item.source_tokens, rotation=60, ha="right")
    axes.set_yticks(range(len(item.target_tokens)), item.target_tokens)
    axes.set_xlabel("source")
    axes.set_ylabel("target")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
