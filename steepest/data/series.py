"""Time series as supervised windows: x = the last `window` values, y = the next one."""

from __future__ import annotations

import numpy as np

from steepest.data.raw import RawData
from steepest.data.sources import DATASETS


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    series = np.asarray(series, dtype=np.float32)
    if series.ndim == 1:
        series = series[:, None]
    n = len(series) - window
    if n <= 0:
        raise ValueError(f"the series ({len(series)} values) is shorter than the window ({window})")
    idx = np.arange(window)[None, :] + np.arange(n)[:, None]
    return series[idx], series[window:, 0]


@DATASETS.register("sine", summary="A noisy sine wave as next-value windows (regression; use data.split_order: ordered).", kind="sequence")
def sine(data_dir=None, length: int = 3000, window: int = 32, period: float = 50.0, noise: float = 0.1, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(2 * np.pi * t / (period * 3.7)) + noise * rng.standard_normal(length)
    x, y = windows(series, window)
    return RawData(x=x, y=y, task="regression", kind="sequence", meta={"series": series.tolist()})
