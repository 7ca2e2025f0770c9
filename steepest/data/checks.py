"""Reject data that cannot be trained on, naming the offending row (before any training starts)."""

from __future__ import annotations

import numpy as np

from steepest.errors import DataError


def _first_bad_row(mask: np.ndarray) -> int:
    rows = mask.reshape(mask.shape[0], -1).any(axis=1)
    return int(np.flatnonzero(rows)[0])


def _show(value) -> str:
    value = np.asarray(value).item()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def check_features(x: np.ndarray, where: str = "features") -> None:
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{where}: no samples; check the data source")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: features must be numeric, got dtype {x.dtype}; encode categorical columns first")
    bad = ~np.isfinite(x)
    if bad.any():
        row = _first_bad_row(bad)
        kind = "NaN" if np.isnan(x[row]).any() else "inf"
        raise DataError(f"{where}: row {row} contains {kind}; drop or impute that row before training")


def check_targets(y: np.ndarray, task: str, num_classes: int | None, where: str = "targets") -> None:
    if task in ("classification", "binary"):
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{where}: class labels must be integers 0..K-1, got dtype {y.dtype}")
        bad_float = ~np.isfinite(y) if np.issubdtype(y.dtype, np.floating) else np.zeros(y.shape, bool)
        if bad_float.any():
            raise DataError(f"{where}: row {_first_bad_row(bad_float)} has a non-finite label; fix or drop it")
        if np.issubdtype(y.dtype, np.floating) and (y != np.round(y)).any():
            row = _first_bad_row(y != np.round(y))
            raise DataError(f"{where}: row {row} has non-integer label {_show(y[row])}; labels must be 0..K-1 (or set data.task: regression)")
        k = num_classes if num_classes is not None else 2 if task == "binary" else None
        low = y < 0
        if low.any():
            row = _first_bad_row(low)
            raise DataError(f"{where}: row {row} has label {_show(y[row])}, outside [0, {k or 'K'}); labels must be 0..K-1")
        if k is not None and (y >= k).any():
            row = _first_bad_row(y >= k)
            raise DataError(f"{where}: row {row} has label {_show(y[row])}, outside [0, {k}); relabel to 0..{k - 1} or raise data.num_classes")
    elif task == "multilabel":
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            raise DataError(f"{where}: row {_first_bad_row(bad)} is not a 0/1 indicator vector (multilabel targets)")
    else:
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"{where}: row {_first_bad_row(bad)} has a non-finite regression target; drop or impute it")


def check_lengths(x: np.ndarray, y: np.ndarray, where: str = "data") -> None:
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} feature rows but {len(y)} targets; they must match one to one")
