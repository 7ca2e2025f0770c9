"""Figures of a run as PNG images embedded in the page (base64 `data:` URIs: the report is one
self-contained file that opens offline). matplotlib (the `plot` extra) draws them, headless."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np

from steepest.errors import ConfigError

Series = list[tuple[int, float]]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("steepest report draws with matplotlib: pip install 'steepest[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    """A figure as a `data:image/png;base64,...` URI (the figure is closed)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)  # the figures call tight_layout themselves
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wants_log_scale(values: Sequence[float]) -> bool:
    """A log axis when the positive values span more than 50x (a loss falling by orders of magnitude).

    >>> wants_log_scale([2.3, 0.01]), wants_log_scale([2.3, 1.1]), wants_log_scale([1.0, -0.5])
    (True, False, False)
    """
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 50


def curves(panels: list[tuple[str, dict[str, Series]]], marks: dict[str, int] | None = None, width: float = 5.0) -> str:
    """Side-by-side panels, each (title, {label: [(step, value), ...]}), sharing the step axis;
    `marks` draws labelled vertical lines (early stopping, best checkpoint) on every panel."""
    plt = _pyplot()
    panels = [(t, {k: s for k, s in lines.items() if s}) for t, lines in panels]
    panels = [(t, lines) for t, lines in panels if lines]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(width * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        values = []
        for label, series in lines.items():
            steps, ys = zip(*series)
            values += [y for y in ys if y is not None]
            ax.plot(steps, [np.nan if y is None else y for y in ys], marker="o" if len(steps) < 30 else None, ms=3, label=label)
        for label, step in (marks or {}).items():
            ax.axvline(step, ls="--", lw=1, color="0.4")
            ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7)
        if wants_log_scale(values):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "nothing logged", ha="center", va="center")
    fig.tight_layout()
    return png(fig)


def confusion(matrix: np.ndarray, names: list[str]) -> str:
    """A confusion matrix (rows: true class, columns: predicted) with counts."""
    plt = _pyplot()
    k = len(matrix)
    size = min(0.45 * k + 2.5, 10)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = matrix.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    return png(fig)


def residuals(true: np.ndarray, predicted: np.ndarray) -> str:
    """Predicted against true (with the diagonal), and the residuals' histogram."""
    plt = _pyplot()
    true, predicted = true.reshape(-1), predicted.reshape(-1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.scatter(true, predicted, s=6, alpha=0.6)
    lo, hi = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    a.plot([lo, hi], [lo, hi], color="0.4", lw=1)
    a.set_xlabel("true")
    a.set_ylabel("predicted")
    b.hist(predicted - true, bins=40)
    b.set_xlabel("residual (predicted - true)")
    fig.tight_layout()
    return png(fig)


def image_grid(images: np.ndarray, titles: list[str], columns: int = 8) -> str:
    """Images (N, C, H, W) in [any range], each scaled to [0, 1] for display, with a title each."""
    plt = _pyplot()
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        img = np.asarray(image, dtype=np.float64)
        img = (img - img.min()) / (img.max() - img.min() or 1.0)
        ax.imshow(img[0] if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0)), cmap="gray" if img.shape[0] == 1 else None)
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    return png(fig)
