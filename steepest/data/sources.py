"""Data sources by name: bundled sets, CSV, .npz and user Datasets by import path."""

from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from steepest.data.checks import check_features, check_lengths
from steepest.data.idx import load_idx_dataset
from steepest.data.raw import RawData
from steepest.data.tabular import MISSING, is_missing
from steepest.errors import DataError, did_you_mean
from steepest.registry import import_object


def _digits_file() -> Path | None:
    """scikit-learn's own copy of the digits table (`sklearn/datasets/data/digits.csv.gz`), found without
    importing scikit-learn (~2 s: scipy and its validation layers), or None where the file is not there."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _read_digits(path: Path) -> SimpleNamespace:
    """The fields of `sklearn.datasets.load_digits()` this module reads, from its CSV (64 pixel columns, then the
    label): the same arrays, values and names as scikit-learn's loader gives (a test compares them)."""
    table = np.loadtxt(path, delimiter=",")
    names = [f"pixel_{row}_{col}" for row in range(8) for col in range(8)]
    return SimpleNamespace(data=table[:, :-1], target=table[:, -1].astype(int), target_names=np.arange(10),
                           feature_names=names)


def sklearn_set(loader: str, task: str, data_dir: str | None = None) -> RawData:
    """A data set bundled with scikit-learn (`sklearn.datasets.<loader>`), read offline. The digits table is read
    straight from scikit-learn's file (the default recipe's data: no scikit-learn import at start-up)."""
    path = _digits_file() if loader == "load_digits" else None
    if path is not None:
        bunch = _read_digits(path)
    else:
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
    if text.lower() in MISSING:
        return float("nan")
    return float(text)


# Byte-order marks, longest first (a UTF-32-LE mark begins with the UTF-16-LE one); no mark: UTF-8.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (b"", "utf-8"))


def read_text(path: Path) -> str:
    """The text of a file: UTF-8, or UTF-8/16/32 with a byte-order mark (the mark is dropped).

    Raises DataError for bytes that are not UTF-8 (naming the line and the `iconv` command that
    converts the file) and for NUL characters (UTF-16 without a byte-order mark).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    bom, encoding = next((bom, enc) for bom, enc in _BOMS if data.startswith(bom))
    data = data[len(bom):]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, "replace").count("\n") + 1
        if encoding == "utf-8":
            raise DataError(f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); the file is probably Latin-1 "
                            f"(Windows-1252): {_convert(path, 'latin1')}") from None
        raise DataError(f"{path}: line {line} is not valid {encoding.upper()} after its byte-order mark; save the file as UTF-8") from None
    if "\0" in text:
        raise DataError(f"{path}: contains NUL characters, so it is probably UTF-16 without a byte-order mark: {_convert(path, 'utf-16le')}")
    return text


def _convert(path: Path, encoding: str) -> str:
    return f"convert it with 'iconv -f {encoding} -t utf-8 {path} > {path.with_name(f'{path.stem}-utf8{path.suffix}')}'"


def csv_header(row: list[str], path: Path) -> list[str]:
    """Column names of a CSV header row, stripped; a name given twice is a DataError naming it."""
    names = [h.strip() for h in row]
    for name in names:
        columns = [str(j + 1) for j, n in enumerate(names) if n == name]
        if len(columns) > 1:
            raise DataError(f"{path}: column name '{name}' appears {len(columns)} times (columns {', '.join(columns[:-1])} and "
                            f"{columns[-1]}); give every column a unique name")
    return names


def csv_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    """Every row of a CSV file as strings (text decoded as `read_text` does); csv syntax errors are DataErrors."""
    try:
        return list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None


def read_csv(path: str | Path, target: str, delimiter: str = ",", categorical: list[str] | None = None,
             categorical_encoding: Literal["onehot", "index"] = "onehot", fill_missing: bool = False) -> RawData:
    """A CSV with a header row; `target` names the label column. String labels become class ids.

    x: (N, columns - 1) float32; y: (N,) class ids or float64 targets. A column of text (or one
    named in `categorical`) is categorical, and `fill_missing` imputes missing numbers: then x is
    an object array (N, columns - 1) of raw cells (floats, NaN where missing, and stripped text)
    and `meta["tabular"]` holds what `steepest.data.tabular.TabularEncoder` is fitted with on the
    training split (`categorical`, `encoding`, `fill_missing`). DataError for a missing file, an
    encoding other than UTF-8/16/32, duplicate column names, no data rows, ragged rows, a row
    with no target, a column mixing numbers and text, missing numbers without `fill_missing`,
    and feature values beyond float32 range.
    """
    path = Path(path)
    if not (isinstance(delimiter, str) and len(delimiter) == 1):
        raise DataError(f"data.options.delimiter: must be one character (',', ';', '|', or \"\\t\" for tabs), got {delimiter!r}")
    if not isinstance(fill_missing, bool):
        raise DataError(f"data.options.fill_missing: expected true or false, got {fill_missing!r}")
    if not path.exists():
        raise DataError(f"data.path: CSV file '{path}' does not exist")
    header, *body = csv_rows(path, delimiter) or [[]]
    if not header:
        raise DataError(f"{path}: empty CSV; the first row must name the columns")
    header = csv_header(header, path)
    if target not in header:
        delimiter_hint = _delimiter_hint(header, target, delimiter)
        if delimiter_hint:
            raise DataError(f"data.target: column '{target}' not in {path}: {delimiter_hint}")
        raise DataError(f"data.target: column '{target}' not in {path};{did_you_mean(target, header)} columns: {', '.join(header)}")
    t = header.index(target)
    features = [h for j, h in enumerate(header) if j != t]
    named = _categorical_names(categorical, header, target, path)
    cells, labels, row_ids = [], [], []
    for i, row in enumerate(body):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: row {i} (line {i + 2}) has {len(row)} fields but the header has {len(header)}; fix the ragged row")
        if is_missing(row[t]):
            what = repr(row[t].strip()) if row[t].strip() else "empty"
            raise DataError(f"{path}: row {i} (line {i + 2}) has no target: column '{target}' is {what}; "
                            "drop that row or fill in its label")
        labels.append(row[t].strip())
        cells.append([c for j, c in enumerate(row) if j != t])
        row_ids.append(i)
    if not cells:
        raise DataError(f"{path}: no data rows below the header; a CSV needs its header line and one row per sample")
    x, text = _feature_columns(cells, features, named, path, row_ids)
    missing = np.isnan(x)
    missing[:, text] = False  # categorical cells are not numbers (their missing cells are category 0)
    if not fill_missing and missing.any():
        bad = missing | np.isinf(x)
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        if missing[row].any():
            column = features[int(np.flatnonzero(missing[row])[0])]
            raise DataError(f"{path} features: row {row_ids[row]} (line {row_ids[row] + 2}) contains NaN (column '{column}' is empty "
                            "or missing); drop that row, or set data.options.fill_missing: true to impute it (training median plus "
                            "a missing-indicator column)")
    numeric = np.where(np.isnan(x), 0.0, x) if text or fill_missing else x
    file_rows = [f"{i} (line {i + 2})" for i in row_ids]  # the file's rows: blank lines were skipped
    check_features(numeric, f"{path} features", row_names=file_rows)  # before the float32 cast, which would turn 1e308 into inf
    meta = {}
    if text or fill_missing:
        cats = [features[j] for j in text]
        table = x.astype(object)
        for j in text:
            table[:, j] = [cells[r][j].strip() for r in range(len(cells))]
        x = table
        meta["tabular"] = {"categorical": cats, "encoding": categorical_encoding, "fill_missing": bool(fill_missing)}
    else:
        x = x.astype(np.float32)
    try:
        y = np.asarray([_parse_number(v) for v in labels], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DataError(f"{path} targets: row {file_rows[bad[0]]} has a non-finite target ({labels[bad[0]]}); drop or fix that row")
        return RawData(x=x, y=y, feature_names=features, meta=meta)
    except ValueError:
        names = sorted(set(labels))
        lookup = {n: i for i, n in enumerate(names)}
        return RawData(x=x, y=np.asarray([lookup[v] for v in labels], np.int64), task="classification",
                       class_names=names, feature_names=features, num_classes=len(names), meta=meta)


_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "bars", ",": "commas"}


def _delimiter_hint(header: list[str], target: str, delimiter: str) -> str | None:
    """When a header read as one column holds another delimiter (a semicolon CSV from a European
    spreadsheet, a TSV): which `data.options.delimiter` to set."""
    if len(header) != 1:
        return None
    for sep, name in _DELIMITERS.items():
        if sep != delimiter and sep in header[0]:
            shown = "\\t" if sep == "\t" else sep
            names = [h.strip() for h in header[0].split(sep)]
            found = f"'{target}' is among the columns it then gives" if target in names else f"columns: {', '.join(names)}"
            return (f"the header reads as one column {header[0]!r}, so the file is probably separated by {name} ({found}); "
                    f'set data.options.delimiter: "{shown}"')
    return None


def _categorical_names(categorical: list[str] | None, header: list[str], target: str, path: Path) -> list[str]:
    """`data.options.categorical` checked against the header: every name a feature column."""
    names = [str(c).strip() for c in (categorical or [])]
    for name in names:
        if name == target:
            raise DataError(f"data.options.categorical: '{name}' is the target column; list feature columns only")
        if name not in header:
            raise DataError(f"data.options.categorical: column '{name}' not in {path};{did_you_mean(name, header)} "
                            f"columns: {', '.join(header)}")
    return names


def _feature_columns(cells: list[list[str]], features: list[str], named: list[str], path: Path,
                     row_ids: list[int]) -> tuple[np.ndarray, list[int]]:
    """The feature cells as float64 (N, F), NaN where missing and in categorical columns, and the
    positions of the categorical columns: those `named`, and columns of text. A column mixing
    numbers and text is a DataError naming its first text cell."""
    x = np.empty((len(cells), len(features)), np.float64)
    text = []
    for j, name in enumerate(features):
        if name in named:
            x[:, j] = np.nan
            text.append(j)
            continue
        words = None
        for r, row in enumerate(cells):
            try:
                x[r, j] = _parse_number(row[j])
            except ValueError:
                words = r if words is None else words
                x[r, j] = np.nan
        if words is None:
            continue
        numbers = [r for r in range(len(cells)) if not np.isnan(x[r, j])]
        if numbers:
            i = row_ids[words]
            raise DataError(f"{path}: row {i} (line {i + 2}) has non-numeric value {cells[words][j]!r} in column '{name}', whose "
                            f"other cells are numbers (row {row_ids[numbers[0]]}: {cells[numbers[0]][j].strip()!r}); fix the cell, "
                            f"or list '{name}' in data.options.categorical to treat the column as categories")
        x[:, j] = np.nan
        text.append(j)
    return x, text


def load_npz(path: Path, keys: Iterable[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays named `keys` that the .npz at `path` holds (pickled arrays refused), and every
    name it holds. An unreadable or corrupt file is a DataError."""
    not_npz = f"{path}: not a numeric .npz archive (the zip of .npy arrays that numpy.savez writes)"
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic.startswith(b"\x93NUMPY"):
        raise DataError(f"{not_npz}: it is a single .npy array; save the arrays with numpy.savez(path, x=..., y=...)")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip's local file header, or an empty zip
        raise DataError(f"{not_npz}; it may be corrupt or another format: save the arrays with numpy.savez(path, x=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.keys())
            found = {}
            for k in keys:
                if k in names:
                    try:
                        found[k] = f[k]
                    except ValueError as exc:
                        if "allow_pickle" not in str(exc):
                            raise
                        raise DataError(f"{path}: array '{k}' holds Python objects, which steepest does not load (they would "
                                        "run pickled code); save it with a numeric dtype, e.g. x.astype(np.float32)") from None
            return found, names
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read .npz ({exc}); the archive is truncated or corrupt: write it again with numpy.savez") from None


def read_npz(path: str | Path, x_key: str = "x", y_key: str = "y") -> RawData:
    """Arrays `x_key` (N, ...) and `y_key` (N,) or (N, k) of an .npz, plus `x_test`/`y_test` when it
    holds them. DataError for a missing or corrupt file, missing arrays, and shapes that are not
    one row per sample (a scalar, zero rows, a y of more than two dimensions, unequal lengths)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.path: file '{path}' does not exist")
    arrays, names = load_npz(path, (x_key, y_key, "x_test", "y_test"))
    if x_key not in arrays or y_key not in arrays:
        raise DataError(f"{path}: needs arrays '{x_key}' and '{y_key}', found {', '.join(names)}; set data.options.x_key / y_key")
    x, y = arrays[x_key], arrays[y_key]
    check_lengths(x, y, str(path), (f"'{x_key}'", f"'{y_key}'"))
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: holds only one of 'x_test' and 'y_test'; give both (an official test split) or neither")
    if "x_test" in arrays:
        check_lengths(arrays["x_test"], arrays["y_test"], str(path), ("'x_test'", "'y_test'"))
    return RawData(x=x, y=y, x_test=arrays.get("x_test"), y_test=arrays.get("y_test"),
                   kind="image" if x.ndim == 4 else "tabular")


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch") and hasattr(value, "shape")


def _sample_kind(value: Any) -> str:
    """'a Tensor', 'a 3-tuple', 'a dict', 'an ndarray': what a user's sample is, for messages."""
    if isinstance(value, (tuple, list)):
        return f"a {len(value)}-{type(value).__name__}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def from_dataset_object(path: str, options: dict[str, Any]) -> RawData:
    """A user Dataset (import path): any object with __len__/__getitem__ returning (x, y) pairs (or
    a `RawData`, or arrays (x, y)). DataError for a bare tensor or array, and for samples that are not pairs (multi-input
    samples and dicts are read sample by sample with `data.stream: true`)."""
    factory = import_object(path, "data.component")
    dataset = factory(**options) if callable(factory) else factory
    if isinstance(dataset, RawData):
        return dataset
    from torch.utils.data import IterableDataset

    if isinstance(dataset, (dict, IterableDataset)):
        what = f"a dict of splits ({', '.join(map(str, dataset))})" if isinstance(dataset, dict) else "an IterableDataset"
        raise DataError(f"data.component: '{path}' gave {what}, which is read split by split and sample by sample; "
                        "set data.stream: true")
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and all(_is_array(a) and np.ndim(a) >= 1 for a in dataset):
        x, y = (np.asarray(a.cpu() if hasattr(a, "cpu") else a) for a in dataset)  # arrays (x, y), as steepest.fit takes them
        check_lengths(x, y, f"data.component '{path}'")
        return RawData(x=x, y=y, kind="image" if x.ndim == 4 else "tabular")
    if _is_array(dataset):  # a tensor or array is indexable too, but its rows are not samples with a target
        raise DataError(f"data.component: '{path}' gave {_sample_kind(dataset)} of shape {tuple(np.shape(dataset))}; samples must be "
                        "(x, y) pairs: return a Dataset whose items are (x, y), or RawData(x=..., y=...) from steepest.data.raw")
    try:
        n = len(dataset)
        pairs = [dataset[i] for i in range(n)]
    except Exception as exc:  # a user's code: report it in one line
        raise DataError(f"data.component: cannot iterate '{path}' as (x, y) pairs: {exc}") from None
    if not pairs:
        raise DataError(f"data.component: '{path}' is empty")
    for i, p in enumerate(pairs):
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            more = (" (multi-input samples (x1, ..., xk, y), for a model whose forward takes k inputs, and dicts are read "
                    "with data.stream: true)"
                    if isinstance(p, dict) or (isinstance(p, (tuple, list)) and len(p) > 2) else "")
            raise DataError(f"data.component: sample {i} of '{path}' is {_sample_kind(p)}; samples must be (x, y) pairs{more}")
    shapes = {np.shape(np.asarray(p[0])) for p in pairs}
    if len(shapes) > 1:
        first = np.shape(np.asarray(pairs[0][0]))
        row = next(i for i, p in enumerate(pairs) if np.shape(np.asarray(p[0])) != first)
        raise DataError(f"data.component: row {row} has shape {np.shape(np.asarray(pairs[row][0]))}, row 0 has {first}; samples must share one shape")
    x = np.stack([np.asarray(p[0], dtype=np.float32) for p in pairs])
    y = np.asarray([np.asarray(p[1]) for p in pairs])
    return RawData(x=x, y=y, kind="image" if x.ndim == 4 else "tabular")
