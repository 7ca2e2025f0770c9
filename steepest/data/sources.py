"""Data sources by name: bundled sets, CSV, .npz and user Datasets by import path."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from steepest.data.idx import load_idx_dataset
from steepest.data.raw import RawData
from steepest.errors import DataError, did_you_mean
from steepest.registry import import_object


def sklearn_set(loader: str, task: str, data_dir: str | None = None) -> RawData:
    """A data set bundled with scikit-learn (`sklearn.datasets.<loader>`), read offline."""
    import sklearn.datasets as skd

    bunch = getattr(skd, loader)()
    names = [str(n) for n in bunch.target_names] if task == "classification" and hasattr(bunch, "target_names") else None
    y = bunch.target.astype(np.int64) if task == "classification" else bunch.target.astype(np.float32)
    return RawData(
        x=bunch.data.astype(np.float32),
        y=y,
        task=task,
        class_names=names,
        feature_names=[str(f) for f in getattr(bunch, "feature_names", [])] or None,
    )


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_CLASSES = {"mnist": [str(i) for i in range(10)], "fashion-mnist": FASHION_CLASSES}


def idx_set(name: str, data_dir: str | None = None) -> RawData:
    """MNIST or Fashion-MNIST from IDX files (official train/test split), pixels scaled to [0, 1]."""
    parts = load_idx_dataset(name, data_dir)
    scale = np.float32(1 / 255)
    return RawData(
        x=parts["train_images"][:, None].astype(np.float32) * scale,
        y=parts["train_labels"].astype(np.int64),
        x_test=parts["test_images"][:, None].astype(np.float32) * scale,
        y_test=parts["test_labels"].astype(np.int64),
        task="classification",
        class_names=IDX_CLASSES[name],
        kind="image",
        num_classes=10,
    )


def _parse_number(text: str) -> float:
    text = text.strip()
    if text == "" or text.lower() in ("na", "nan", "null", "none", "?"):
        return float("nan")
    return float(text)


def read_csv(path: str | Path, target: str, delimiter: str = ",") -> RawData:
    """A CSV with a header row; `target` names the label column. String labels become class ids."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.path: CSV file '{path}' does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV; the first row must name the columns")
        header = [h.strip() for h in header]
        if target not in header:
            raise DataError(f"data.target: column '{target}' not in {path};{did_you_mean(target, header)} columns: {', '.join(header)}")
        t = header.index(target)
        rows, labels = [], []
        for i, row in enumerate(reader):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: row {i} (line {i + 2}) has {len(row)} fields but the header has {len(header)}; fix the ragged row")
            labels.append(row[t].strip())
            try:
                rows.append([_parse_number(c) for j, c in enumerate(row) if j != t])
            except ValueError:
                bad = next(c for j, c in enumerate(row) if j != t and not _is_number(c))
                raise DataError(f"{path}: row {i} (line {i + 2}) has non-numeric value {bad!r}; encode categorical columns as numbers") from None
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(header) - 1)
    features = [h for j, h in enumerate(header) if j != t]
    try:
        y = np.asarray([_parse_number(v) for v in labels], dtype=np.float64)
        if np.isnan(y).any():
            raise DataError(f"{path}: row {int(np.flatnonzero(np.isnan(y))[0])} has an empty or NaN target; drop that row")
        return RawData(x=x, y=y, feature_names=features)
    except ValueError:
        names = sorted(set(labels))
        lookup = {n: i for i, n in enumerate(names)}
        return RawData(x=x, y=np.asarray([lookup[v] for v in labels], np.int64), task="classification",
                       class_names=names, feature_names=features, num_classes=len(names))


def _is_number(text: str) -> bool:
    try:
        _parse_number(text)
        return True
    except ValueError:
        return False


def read_npz(path: str | Path, x_key: str = "x", y_key: str = "y") -> RawData:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.path: file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if x_key not in keys or y_key not in keys:
                raise DataError(f"{path}: needs arrays '{x_key}' and '{y_key}', found {', '.join(keys)}; set data.options.x_key / y_key")
            x, y = f[x_key], f[y_key]
            extra = {k: f[k] for k in ("x_test", "y_test") if k in keys}
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read .npz ({exc})") from None
    return RawData(x=x, y=y, x_test=extra.get("x_test"), y_test=extra.get("y_test"),
                   kind="image" if x.ndim == 4 else "tabular")


def from_dataset_object(path: str, options: dict[str, Any]) -> RawData:
    """A user Dataset (import path): any object with __len__/__getitem__ returning (x, y)."""
    factory = import_object(path, "data.component")
    dataset = factory(**options) if callable(factory) else factory
    if isinstance(dataset, RawData):
        return dataset
    try:
        n = len(dataset)
        pairs = [dataset[i] for i in range(n)]
    except Exception as exc:  # a user's code: report it in one line
        raise DataError(f"data.component: cannot iterate '{path}' as (x, y) pairs: {exc}") from None
    if not pairs:
        raise DataError(f"data.component: '{path}' is empty")
    shapes = {np.shape(np.asarray(p[0])) for p in pairs}
    if len(shapes) > 1:
        first = np.shape(np.asarray(pairs[0][0]))
        row = next(i for i, p in enumerate(pairs) if np.shape(np.asarray(p[0])) != first)
        raise DataError(f"data.component: row {row} has shape {np.shape(np.asarray(pairs[row][0]))}, row 0 has {first}; samples must share one shape")
    x = np.stack([np.asarray(p[0], dtype=np.float32) for p in pairs])
    y = np.asarray([np.asarray(p[1]) for p in pairs])
    return RawData(x=x, y=y, kind="image" if x.ndim == 4 else "tabular")
