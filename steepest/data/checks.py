"""Reject data that cannot be trained on, naming the offending row: whole arrays before training
starts, or batch by batch for data read sample by sample (`batch_checker`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from steepest.errors import DataError


def _first_bad_row(mask: np.ndarray) -> int:
    rows = mask.reshape(mask.shape[0], -1).any(axis=1)
    return int(np.flatnonzero(rows)[0])


def _show(value) -> str:
    value = np.asarray(value).item()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38: training runs in float32 (or narrower)


def _beyond_float32(values: np.ndarray) -> np.ndarray:
    """True where a finite value would overflow to inf when cast to float32."""
    if not np.issubdtype(values.dtype, np.floating) or values.dtype.itemsize <= 4:
        return np.zeros(values.shape, bool)
    return np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)


def check_rows(x: np.ndarray, where: str = "features", name: str = "x") -> None:
    """`x` must be an array of shape (N, ...) with N >= 1 samples; `name` is the array's name in messages."""
    if x.ndim == 0:
        raise DataError(f"{where}: {name} is a scalar (shape ()); expected an array of shape (n_samples, ...), one row per sample")
    if len(x) == 0:
        raise DataError(f"{where}: no samples ({name} has 0 rows); give at least one row per sample")


def check_features(x: np.ndarray, where: str = "features", stage: str = "training", row_names: Sequence | None = None) -> None:
    """Features (N, ...): N >= 1, numeric, finite and within float32 range; the first bad row is named (as
    `row_names[row]` when given: a file's own row and line, where blank lines were skipped).
    `stage` is what the fix must come before ("training", or "predicting" for a run's inputs)."""
    check_rows(x, where)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: features must be numeric, got dtype {x.dtype}; encode categorical columns first")
    bad = ~np.isfinite(x)
    if bad.any():
        row = _first_bad_row(bad)
        kind = "NaN" if np.isnan(x[row]).any() else "inf"
        raise DataError(f"{where}: row {row_names[row] if row_names else row} contains {kind}; drop or impute that row before {stage}")
    big = _beyond_float32(x)
    if big.any():
        row = _first_bad_row(big)
        raise DataError(f"{where}: row {row_names[row] if row_names else row} has value {x[row][big[row]].flat[0]:.3g}, beyond the "
                        f"float32 range (±{FLOAT32_MAX:.3g}) training uses; rescale that column or drop the row")


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
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise DataError(f"{where}: {task} targets must be numbers, got dtype {y.dtype}"
                            f"{' (text labels: set data.task: classification)' if y.dtype.kind in 'US' else ''}")
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"{where}: row {_first_bad_row(bad)} has a non-finite regression target; drop or impute it")
        big = _beyond_float32(y)
        if big.any():
            row = _first_bad_row(big)
            raise DataError(f"{where}: row {row} has target {y[row][big[row]].flat[0]:.3g}, beyond the float32 range (±{FLOAT32_MAX:.3g}) "
                            "training uses; rescale the targets (a unit or a log scale) or drop the row")


FEW_ABSENT = 5  # class ids below the largest label that may be absent before the labels read as ids of another kind
MAX_ABSENT = 10_000  # absent class ids refused however many classes there are (each would be a model output)


def _ids(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


MANY_INFERRED_CLASSES = 20  # distinct integer targets above which a task read from the labels as classes is said


def class_count(y: np.ndarray, where: str = "labels", inferred: bool = False) -> int:
    """The number of classes K of labels y (already checked as whole numbers >= 0 by
    `check_targets`) when the data does not declare it: the largest label + 1.

    Labels that are ids of another kind (years, product codes: {0, 1000000} would be a model with a
    million outputs, most never seen) are a DataError: more than `MAX_ABSENT` class ids below the
    largest label absent, or more than `FEW_ABSENT` absent and more than half of them. A few absent
    ids (labels {1, 2}: class 0 never occurs) are a warning naming them: the model still gets an
    output for each, one that is never trained. `inferred` (the task was read from the labels, not
    declared): more than `MANY_INFERRED_CLASSES` distinct values is one warning saying the target
    was taken as classes and that `data.task: regression` trains it as a number."""
    present = np.unique(np.asarray(y).reshape(-1))
    k = int(present[-1]) + 1
    absent = k - len(present)
    if absent > MAX_ABSENT or (absent > FEW_ABSENT and k > 2 * len(present)):
        raise DataError(f"{where}: the labels are not class ids 0..K-1: {len(present)} distinct values up to {k - 1}, which would "
                        f"make {k:,} classes, {absent:,} of them never seen; relabel them 0..{len(present) - 1}, or set "
                        "data.task: regression if they are quantities")
    if inferred and len(present) > MANY_INFERRED_CLASSES:  # an integer quantity (a count, an age, a score) read as classes
        never = f", {absent} id{'s' if absent > 1 else ''} below {k - 1} never occurring" if absent else ""
        warnings.warn(f"{where}: {len(present)} distinct integer values were taken as classification with {k} classes{never}; "
                      "set data.task: regression to train the target as a number (or data.task: classification to keep "
                      "the classes and silence this)", stacklevel=2)
        return k
    if absent:
        missing = np.setdiff1d(np.arange(k), present)
        warnings.warn(f"{where}: class{'es' if absent > 1 else ''} {_ids(missing)} never occur{'' if absent > 1 else 's'} (labels run "
                      f"up to {k - 1}): {absent} of the model's {k} outputs would never be trained; relabel the classes "
                      f"0..{len(present) - 1}, or set data.num_classes: {k} if the ids are meant", stacklevel=2)
    return k


def check_classes(y: np.ndarray, where: str = "labels", names: list[str] | None = None) -> None:
    """Class labels y (N,) hold at least 2 distinct classes: with one there is nothing to learn and
    every metric would be trivially perfect."""
    present = np.unique(y)
    if len(present) < 2:
        c = int(present[0])
        label = f"'{names[c]}'" if names and 0 <= c < len(names) else str(c)
        raise DataError(f"{where}: all {len(y)} samples are class {label}; classification needs at least 2 classes (or set data.task: regression)")


def check_lengths(x: np.ndarray, y: np.ndarray, where: str = "data", names: tuple[str, str] = ("x", "y")) -> None:
    """Features `x` (N, ...) and targets `y` (N,) or (N, k), one label or k targets per sample, N >= 1.
    `names` are the arrays' names in messages (the keys of an .npz)."""
    check_rows(x, where, names[0])
    if y.ndim not in (1, 2):
        n = len(x)
        raise DataError(f"{where}: {names[1]} has shape {y.shape}; expected ({n},) or ({n}, k): one label or k targets per sample")
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} feature rows but {len(y)} targets; they must match one to one")


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)) and value:
        return f"{type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__


def _all_finite(t: torch.Tensor) -> bool:
    """True when every value of float tensor `t` is finite, in one reduction: a NaN or an inf makes
    the sum non-finite, so a finite sum proves the tensor is (about 10x cheaper than
    `isfinite(t).all()`, which writes a mask first). A finite tensor whose sum overflows reads as
    False, and the caller's exact per-element check then finds nothing."""
    total = t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)
    return bool(torch.isfinite(total))


def batch_checker(task: str | None, num_classes: int | None, target_key: str = "labels", where: str = "training data"):
    """The row checks of `check_features`/`check_targets`, per batch, for data read sample by sample
    (Datasets, streams): `check(batch, indices)` raises a one-line DataError naming the stream or
    Dataset index of the first bad sample (NaN/inf inputs, labels outside [0, K), a batch with no
    tensor). Batches are (x, y), (x1, ..., y) or dicts with the target under `target_key`; token
    labels equal to -100 (ignored by cross entropy) are not checked. Cost: one reduction per
    tensor per batch (a sum, a min/max), on the loader's (CPU) side; the bad row is searched for
    only when that reduction says there is one."""

    def rows(mask: torch.Tensor) -> int:
        return int(mask.reshape(mask.shape[0], -1).any(dim=1).nonzero()[0, 0])

    def check(batch: Any, indices: Sequence[int]) -> None:
        def name(row: int) -> str:
            return f"sample {indices[row]}" if row < len(indices) else f"row {row} of a batch"

        if isinstance(batch, dict):
            inputs, target = [v for k, v in batch.items() if k != target_key], batch.get(target_key)
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            inputs, target = list(batch[:-1]), batch[-1]
        else:
            inputs, target = [batch], None
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        if not tensors:
            first = f"samples {indices[0]}.." if len(indices) else "a batch"
            raise DataError(f"{where}: {first} gave no tensor inputs (got {', '.join(map(_kind, inputs)) or 'nothing'}); "
                            "return tensors (or numbers/arrays) from the Dataset, or give a collate_fn that makes them")
        for t in tensors:
            if t.is_floating_point() and t.ndim >= 1 and len(t) and not _all_finite(t):
                bad = ~torch.isfinite(t)
                if bool(bad.any()):
                    row = rows(bad)
                    kind = "NaN" if bool(torch.isnan(t[row]).any()) else "inf"
                    raise DataError(f"{where}: {name(row)} contains {kind}; drop or impute that sample before training")
        if not isinstance(target, torch.Tensor) or target.ndim == 0 or not len(target):
            return
        if task in ("classification", "binary") and not target.is_floating_point():
            k = num_classes if num_classes is not None else 2 if task == "binary" else None
            labels = target if target.ndim == 1 else target.masked_fill(target == -100, 0)
            if not labels.numel():
                return
            lowest, highest = (int(v) for v in torch.aminmax(labels))  # one pass; rows are located only when a label is out
            if lowest < 0 or (k is not None and highest >= k):
                low, high = labels < 0, (labels >= k) if k is not None else torch.zeros_like(labels, dtype=torch.bool)
                row = rows(low | high)
                value = int(target[row].flatten()[(low | high)[row].flatten()][0])
                fix = f"relabel to 0..{k - 1} or raise data.num_classes" if k is not None else "labels must be 0..K-1"
                raise DataError(f"{where}: {name(row)} has label {value}, outside [0, {k or 'K'}); {fix}")
        elif target.is_floating_point() and target.ndim >= 1 and not _all_finite(target):
            bad = ~torch.isfinite(target)
            if bool(bad.any()):
                raise DataError(f"{where}: {name(rows(bad))} has a non-finite target; drop or impute it")

    return check
