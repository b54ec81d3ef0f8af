"""Figures used across lessons: image grids, query/reference pairs, PR curves (lesson 00)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def show_images(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 5,
                size: float = 2.6, suptitle: str | None = None):
    """Show PIL images (or arrays) in a grid; returns the figure."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(im)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_pr(curves: dict, ax=None, p90: bool = True):
    """Plot precision-recall curves: ``curves`` maps a label to an :class:`~isc_helpers.metrics.Evaluation`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for label, ev in curves.items():
        ax.plot(ev.recall, ev.precision, label=f"{label} (µAP {ev.uap:.3f})")
    if p90:
        ax.axhline(0.9, ls=":", c="grey", lw=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return ax
