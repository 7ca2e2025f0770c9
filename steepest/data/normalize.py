"""Normalization statistics fitted on the training split only, reused for val/test/inference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / std, per feature (tabular) or per channel (images, axis 1)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    per_channel: bool = False

    @classmethod
    def fit(cls, x: np.ndarray, per_channel: bool = False) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        axes = (0, *range(2, x.ndim)) if per_channel else 0
        mean = x.mean(axis=axes).reshape(-1)
        std = x.std(axis=axes).reshape(-1)
        std = np.where(std < 1e-12, 1.0, std)  # constant columns stay as they are
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std), per_channel)

    @classmethod
    def identity(cls, width: int = 1) -> Standardizer:
        return cls((0.0,) * width, (1.0,) * width)

    def _shape(self, x: np.ndarray) -> tuple[int, ...]:
        if self.per_channel:
            return (1, len(self.mean)) + (1,) * (x.ndim - 2)
        return (1, *x.shape[1:]) if len(self.mean) > 1 else (1,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(self._shape(x))
        std = np.asarray(self.std, dtype=np.float64).reshape(self._shape(x))
        return ((x - mean) / std).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(self._shape(x))
        std = np.asarray(self.std, dtype=np.float64).reshape(self._shape(x))
        return (x * std + mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "per_channel": self.per_channel}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(tuple(d["mean"]), tuple(d["std"]), bool(d.get("per_channel", False)))
