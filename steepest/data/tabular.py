"""Tabular columns as fastai's tabular pipeline prepares them: categories to indices, missing
numbers filled, fitted on the training split only.

`TabularEncoder` is fastai's `Categorify` and `FillMissing` procs in one object (fastai,
`fastai.tabular.core`; Howard & Gugger, "Fastai: A Layered API for Deep Learning", 2020):

- a categorical column (text that is not a number, or a column named in
  `data.options.categorical`) maps the categories seen in the *training* rows, sorted, to
  indices 1..K; index 0 is `#na#`: a missing cell, or a category the training rows never held
  (a category met only in validation, test or prediction rows is unknown, never a new index).
  `encoding: onehot` (the default) writes K + 1 0/1 columns `color=#na#`, `color=blue`, ...;
  `encoding: index` writes one column holding the index (0..K), for a model with an embedding
  per column (entity embeddings: Guo & Berkhahn, "Entity Embeddings of Categorical
  Variables", 2016); `cardinalities` gives each such column's K + 1.
- a numeric column missing cells (empty, `NA`, `NaN`, `null`, `none`, `?`) in the training rows
  is filled with its training median and followed by a 0/1 column `age_missing` (1 where the
  cell was missing), so the model can use the missingness itself. With `fill_missing` every
  numeric column records its median: a cell missing only outside the training rows is filled
  with it (no indicator column: training never saw one). Without `fill_missing` a missing
  number is a DataError naming the row and the column.

Layout: the original columns in their order, each expanded in place (a number, then its
indicator; a categorical block or index). Standardization (`fit_standardizer`) scales the
numeric value columns only: one-hot, indicator and index columns stay 0/1 and integers (their
mean 0 and std 1 in the recorded statistics, so `DataInfo.x_norm` still spans the full width).

    >>> import numpy as np
    >>> rows = np.array([["red", 1.0], ["blue", np.nan], ["red", 3.0]], dtype=object)
    >>> enc = TabularEncoder.fit(rows, ["color", "age"], categorical=["color"], fill_missing=True)
    >>> enc.feature_names
    ['color=#na#', 'color=blue', 'color=red', 'age', 'age_missing']
    >>> enc.transform(np.array([["green", None], ["blue", 5]], dtype=object)).tolist()
    [[1.0, 0.0, 0.0, 2.0, 1.0], [0.0, 1.0, 0.0, 5.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from steepest.data.normalize import Standardizer
from steepest.errors import DataError

MISSING = frozenset({"", "na", "nan", "null", "none", "?"})  # cell text (stripped, lower-cased) that means "no value"
UNKNOWN = "#na#"  # fastai's name for index 0: missing, or a category the training rows never held
ENCODINGS = ("onehot", "index")


def is_missing(value: Any) -> bool:
    """True for None, NaN and the text of a missing cell (`MISSING`, any case, spaces ignored)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def category_key(value: Any) -> str:
    """The text a categorical cell is matched by: stripped text; an integral number as `3`, not `3.0`."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def numeric_column(col: np.ndarray, name: str, where: str) -> np.ndarray:
    """A column of numbers (strings, floats or None) as float64 (N,), NaN where missing.
    DataError naming the row for a cell that is neither a number nor missing."""
    if col.dtype.kind in "fiub":
        return col.astype(np.float64)
    col = col.astype(object)
    try:
        return col.astype(np.float64)  # floats and numeric text; None, "NA", "?" fall through
    except (TypeError, ValueError):
        pass
    out = np.empty(len(col), np.float64)
    for i, value in enumerate(col):
        if is_missing(value):
            out[i] = np.nan
            continue
        try:
            out[i] = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: row {i} has non-numeric value {value!r} in numeric column '{name}'; fix the cell "
                            "(a category the training rows held as text is a categorical column)") from None
    return out


@dataclass(frozen=True)
class TabularEncoder:
    """Raw table rows (N, F) -> float64 features (N, width); see the module docstring.

    `columns`: the F raw column names in order; `categories`: categorical column -> its training
    categories (index 1..K, sorted); `medians`: numeric column -> training median (with
    `fill_missing`); `indicators`: the numeric columns that get a missing-indicator column.
    """

    columns: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    indicators: tuple[str, ...] = ()
    encoding: str = "onehot"
    fill_missing: bool = False

    @classmethod
    def fit(cls, x: np.ndarray, columns: Sequence[str], categorical: Sequence[str] = (), encoding: str = "onehot",
            fill_missing: bool = False, where: str = "training rows") -> TabularEncoder:
        """Fit on the training rows `x` (N, F): object (text, numbers, None) or numeric (NaN = missing).

        `categorical`: the names of the categorical columns (the rest are numeric). DataError for
        an unknown encoding, a shape that is not (N, len(columns)), a non-numeric cell in a numeric
        column, or (without `fill_missing`) a missing number."""
        if encoding not in ENCODINGS:
            raise DataError(f"data.options.categorical_encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")
        x = _table(x, columns, where)
        categories, medians, indicators = {}, {}, []
        for j, name in enumerate(columns):
            if name in categorical:
                seen = {category_key(v) for v in x[:, j] if not is_missing(v)}
                categories[name] = tuple(sorted(seen - {UNKNOWN}))
                continue
            values = numeric_column(x[:, j], name, where)
            missing = np.isnan(values)
            if missing.any() and not fill_missing:
                raise _missing_error(where, int(np.flatnonzero(missing)[0]), name)
            if fill_missing:
                medians[name] = float(np.median(values[~missing])) if (~missing).any() else 0.0
                if missing.any():
                    indicators.append(name)
        return cls(tuple(columns), categories, medians, tuple(indicators), encoding, bool(fill_missing))

    @property
    def feature_names(self) -> list[str]:
        """The names of the `width` output columns: `age`, `age_missing`, `color=#na#`, `color=red`, ... (`color` for index)."""
        names: list[str] = []
        for name in self.columns:
            if name in self.categories:
                cats = (UNKNOWN, *self.categories[name])
                names += [f"{name}={c}" for c in cats] if self.encoding == "onehot" else [name]
            else:
                names += [name, f"{name}_missing"] if name in self.indicators else [name]
        return names

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @property
    def scaled(self) -> np.ndarray:
        """(width,) bool: the numeric value columns, the only ones standardization scales."""
        flags: list[bool] = []
        for name in self.columns:
            if name in self.categories:
                flags += [False] * ((len(self.categories[name]) + 1) if self.encoding == "onehot" else 1)
            else:
                flags += [True, False] if name in self.indicators else [True]
        return np.asarray(flags, bool)

    @property
    def cardinalities(self) -> list[int]:
        """K + 1 per categorical column, in column order: the embedding sizes an `index` model needs."""
        return [len(self.categories[n]) + 1 for n in self.columns if n in self.categories]

    @property
    def index_columns(self) -> list[int]:
        """The output positions of the categorical index columns (`encoding: index`); [] for onehot."""
        if self.encoding != "index":
            return []
        names = self.feature_names
        return [names.index(n) for n in self.columns if n in self.categories]

    def transform(self, x: np.ndarray, where: str = "inputs") -> np.ndarray:
        """Raw rows (N, F) in `columns` order -> float64 (N, width). Unseen categories and missing
        categorical cells -> index 0; missing numbers -> the training median (+ indicator 1).
        DataError naming the row: a non-numeric cell in a numeric column; a missing number when the
        encoder was fitted without `fill_missing`."""
        x = _table(x, self.columns, where)
        parts: list[np.ndarray] = []
        for j, name in enumerate(self.columns):
            if name in self.categories:
                lookup = {c: i + 1 for i, c in enumerate(self.categories[name])}
                idx = np.fromiter((0 if is_missing(v) else lookup.get(category_key(v), 0) for v in x[:, j]), np.int64, len(x))
                if self.encoding == "onehot":
                    parts.append(np.eye(len(lookup) + 1)[idx])
                else:
                    parts.append(idx[:, None].astype(np.float64))
                continue
            values = numeric_column(x[:, j], name, where)
            missing = np.isnan(values)
            if missing.any():
                if name not in self.medians:
                    raise _missing_error(where, int(np.flatnonzero(missing)[0]), name)
                values = np.where(missing, self.medians[name], values)
            parts.append(values[:, None])
            if name in self.indicators:
                parts.append(missing[:, None].astype(np.float64))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(x), 0))

    def fit_standardizer(self, x: np.ndarray) -> Standardizer:
        """Standardization statistics for encoded training rows `x` (N, width): fitted on the numeric
        value columns; mean 0 and std 1 (left as they are) for one-hot, indicator and index columns."""
        fitted = Standardizer.fit(x)
        keep = self.scaled
        mean = tuple(m if k else 0.0 for m, k in zip(fitted.mean, keep))
        std = tuple(s if k else 1.0 for s, k in zip(fitted.std, keep))
        return replace(fitted, mean=mean, std=std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (saved in data_info.json as `tabular`); `feature_names` and `cardinalities` are for readers."""
        return {"columns": list(self.columns), "categories": {k: list(v) for k, v in self.categories.items()},
                "medians": dict(self.medians), "indicators": list(self.indicators), "encoding": self.encoding,
                "fill_missing": self.fill_missing, "feature_names": self.feature_names, "cardinalities": self.cardinalities}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularEncoder:
        return cls(tuple(d["columns"]), {k: tuple(v) for k, v in d.get("categories", {}).items()},
                   {k: float(v) for k, v in d.get("medians", {}).items()}, tuple(d.get("indicators", ())),
                   d.get("encoding", "onehot"), bool(d.get("fill_missing", False)))


def _table(x: Any, columns: Sequence[str], where: str) -> np.ndarray:
    """`x` as a 2-D array with one column per name; a list of dicts is read by column name."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, dict) for r in x):
        absent = [c for c in columns if any(c not in r for r in x)]
        if absent:
            raise DataError(f"{where}: rows lack column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent[:5]))}")
        x = [[r[c] for c in columns] for r in x]
    arr = np.asarray(x) if isinstance(x, np.ndarray) else np.asarray(x, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != len(columns):
        raise DataError(f"{where}: rows have shape {arr.shape[1:]}, expected ({len(columns)},): the columns {', '.join(columns)}")
    return arr


def _missing_error(where: str, row: int, name: str) -> DataError:
    return DataError(f"{where}: row {row} contains NaN (column '{name}' is empty or missing); drop that row, or set "
                     "data.options.fill_missing: true to impute it (training median plus a missing-indicator column)")
