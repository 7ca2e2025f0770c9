"""Time series as supervised windows: x = the last `window` values, y = the next one.

`sine` is a generated series (a noisy sum of two sines). No real series ships offline with
scikit-learn or this project's dependencies, so `series_file` reads one from a CSV column or a
`.npy` file. Use `data.split_order: ordered` so the held-out stretches come after the training one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steepest.data.raw import RawData
from steepest.errors import DataError


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    series = np.asarray(series, dtype=np.float32)
    if series.ndim == 1:
        series = series[:, None]
    n = len(series) - window
    if n <= 0:
        raise ValueError(f"the series ({len(series)} values) is shorter than the window ({window})")
    idx = np.arange(window)[None, :] + np.arange(n)[:, None]
    return series[idx], series[window:, 0]


def sine(data_dir=None, length: int = 3000, window: int = 32, period: float = 50.0, noise: float = 0.1, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(2 * np.pi * t / (period * 3.7)) + noise * rng.standard_normal(length)
    x, y = windows(series, window)
    return RawData(x=x, y=y, task="regression", kind="sequence", meta={"series": series.tolist()})


def series_file(data_dir=None, path: str | None = None, column: str | None = None, window: int = 32) -> RawData:
    if path is None or not Path(path).exists():
        raise DataError(f"data.options.path: series file '{path}' does not exist")
    if str(path).endswith(".npy"):
        series = np.load(path, allow_pickle=False).astype(np.float64).reshape(-1)
    else:
        header = Path(path).read_text(encoding="utf-8").splitlines()[0].split(",")
        names = [h.strip() for h in header]
        col = names.index(column) if column in names else (0 if column is None and len(names) == 1 else None)
        if col is None:
            raise DataError(f"data.options.column: give the series' column, one of {', '.join(names)}")
        series = np.loadtxt(path, delimiter=",", skiprows=1, usecols=col, ndmin=1)
    if not np.isfinite(series).all():
        raise DataError(f"{path}: value {int(np.flatnonzero(~np.isfinite(series))[0])} is NaN or inf; fill the gap first")
    try:
        x, y = windows(series, window)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    return RawData(x=x, y=y, task="regression", kind="sequence")
