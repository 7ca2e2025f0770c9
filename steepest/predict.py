"""Inference from a finished run: the model, plus the normalization fitted on its training split.

    >>> from steepest.predict import Predictor          # doctest: +SKIP
    >>> p = Predictor.load("runs/digits_mlp-20261122")   # doctest: +SKIP
    >>> p.predict(x_raw)     # class ids, or targets in original units   # doctest: +SKIP

`steepest predict RUN_DIR INPUT` reads a CSV (same feature columns as training; a target column,
if present, is ignored) or an .npz with array `x`, and writes one prediction per row. A run
trained on categorical or imputed CSV columns (`DataInfo.tabular`) encodes raw CSV rows with its
training encoder first: unseen categories map to unknown, missing numbers to the training median
plus the missing-indicator column (steepest.data.tabular).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from steepest.config.build import build_model_from_recipe
from steepest.config.load import load_run_recipe
from steepest.data.checks import check_features, check_rows
from steepest.data.containers import DataInfo
from steepest.data.normalize import Standardizer
from steepest.data.sources import csv_header, csv_rows, load_npz
from steepest.data.tabular import TabularEncoder
from steepest.data.text import tokenize
from steepest.errors import CheckpointError, DataError


def read_data_info(path: Path) -> DataInfo:
    """A run's data_info.json; CheckpointError (one line) when it is truncated or not what steepest wrote."""
    try:
        raw = json.loads(path.read_text())
        raw["input_shape"] = tuple(int(d) for d in raw["input_shape"])
        info = DataInfo(**raw)
        if info.task not in ("classification", "binary", "multilabel", "regression", "metric") or int(info.num_outputs) < 1:
            raise ValueError(f"task {info.task!r}, {info.num_outputs!r} outputs")
        return info
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise CheckpointError(f"{path} is unreadable or not a steepest data_info.json ({type(exc).__name__}); "
                              "give a run directory written by steepest train") from None


class Predictor:
    def __init__(self, model: torch.nn.Module, info: DataInfo, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.info, self.device = info, torch.device(device)
        self.x_norm = Standardizer.from_dict(info.x_norm) if info.x_norm else None
        self.y_norm = Standardizer.from_dict(info.y_norm) if info.y_norm else None
        self.encoder = TabularEncoder.from_dict(info.tabular) if info.tabular else None

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu", *, trust_code: bool = False) -> Predictor:
        """The finished run in `run_dir`: its model rebuilt from config.yaml with the final weights
        (model.safetensors) and its data info (data_info.json). CheckpointError when a file is missing.

        The run's recipe is read as untrusted: a `component:` import path anywhere in it (user code,
        which rebuilding would import and run) is refused with a ConfigError unless `trust_code`
        (`steepest predict/export --trust-code`); registered names are always allowed."""
        run = Path(run_dir)
        for needed in ("config.yaml", "model.safetensors", "data_info.json"):
            if not (run / needed).exists():
                raise CheckpointError(f"{run} has no {needed}; predict needs a finished run directory (steepest train --run-dir ...)")
        recipe = load_run_recipe(run / "config.yaml", trust_code=trust_code)  # before anything is imported or read
        info = read_data_info(run / "data_info.json")
        model = build_model_from_recipe(recipe, info.input_shape, info.num_outputs, info.tabular)
        try:
            state = load_file(str(run / "model.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{run / 'model.safetensors'} is unreadable ({exc})") from None
        model.load_state_dict(state)
        return cls(model, info, device)

    def encode(self, rows, where: str = "inputs") -> np.ndarray:
        """Raw table rows -> the encoded features (N, width) float32 the model takes, for a run with
        categorical or imputed columns: rows (N, F) of raw cells in the training column order
        (`info.tabular["columns"]`; text, numbers, None/NaN/"" for missing) or a list of dicts keyed
        by column name. DataError for a run without such columns, and for rows that do not fit."""
        if self.encoder is None:
            raise DataError("this run was trained on numeric features only; give them as a float array")
        return self.encoder.transform(rows, where).astype(np.float32)

    def _raw_rows(self, x) -> bool:
        """Whether `x` holds raw table rows to encode (text cells, dicts, or the raw column count) rather than features."""
        if self.encoder is None:
            return False
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], dict):
            return True
        arr = x if isinstance(x, np.ndarray) else np.asarray(x, dtype=object)
        if arr.dtype == object or arr.dtype.kind in "US":
            return True
        return arr.ndim == 2 and arr.shape[1] == len(self.encoder.columns) != self.encoder.width

    @torch.no_grad()
    def outputs(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Model outputs (N, num_outputs) for features (N, *input_shape), normalized as in training;
        a run with categorical or imputed columns also takes raw table rows (see `encode`)."""
        if self._raw_rows(x):
            x = self.encode(x)
        x = np.asarray(x, dtype=np.float32)
        expected = tuple(self.info.input_shape)
        if x.shape[1:] != expected:
            if x.shape == expected:
                raise DataError(f"inputs are one sample of shape {x.shape}; give a batch of shape (N, {', '.join(map(str, expected))}), "
                                "e.g. x[None] for one sample")
            if int(np.prod(x.shape[1:])) == int(np.prod(expected)):
                x = x.reshape(len(x), *expected)
            else:
                raise DataError(f"inputs have shape {x.shape[1:]}, the model was trained on {expected}")
        check_features(x, "inputs", "predicting")
        if self.x_norm is not None:
            x = self.x_norm.transform(x)
        chunks = [self.model(torch.from_numpy(x[i : i + batch_size]).to(self.device)).float().cpu().numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class ids (classification), 0/1 (binary, multilabel), values in the targets' units
        (regression) or embeddings (N, D) (a metric-learning run)."""
        out = self.outputs(x)
        task = self.info.task
        if task == "classification":
            return out.argmax(axis=1)
        if task == "binary":
            return (out.reshape(-1) > 0).astype(np.int64)
        if task == "multilabel":
            return (out > 0).astype(np.int64)
        return self.y_norm.inverse(out) if self.y_norm else out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Raw strings -> the token-id rows the model was trained on (the run's tokenizer and length)."""
        if not self.info.text:
            raise DataError("this run was not trained on text; give feature arrays, not strings")
        return tokenize(list(texts), self.info.text["tokenizer"], self.info.text["max_length"])

    def predict_texts(self, texts: list[str]) -> list[str] | np.ndarray:
        """Class names (or ids when the run has no names) for raw strings."""
        ids = self.predict(self.encode_texts(texts))
        names = self.info.class_names
        return [names[i] for i in ids] if names and self.info.task == "classification" else ids

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = torch.from_numpy(self.outputs(x))
        if self.info.task == "classification":
            return torch.softmax(out, dim=1).numpy()
        if self.info.task in ("binary", "multilabel"):
            p = torch.sigmoid(out).numpy()
            return np.concatenate([1 - p, p], axis=1) if self.info.task == "binary" else p
        raise DataError(f"predict_proba is for classification runs; this run is a {self.info.task} task")


def read_inputs(path: str | Path, info: DataInfo) -> np.ndarray:
    """Feature rows for `steepest predict`, float32 (N, ...).

    A CSV (UTF-8, or UTF-8/16/32 with a byte-order mark) whose header names the run's feature
    columns in any order (other columns are ignored), or that has no header (every column, in
    training order); or an .npz with an array `x`. For a run with categorical or imputed columns
    (`info.tabular`) the CSV needs a header naming the raw training columns; its cells are encoded
    by the run's `TabularEncoder` (an unseen category is unknown, a missing number the training
    median plus its indicator), and an .npz holds the encoded features. DataError for a missing or
    unreadable file, duplicate column names, missing columns, no rows, cells that are not numbers
    (in numeric columns) and values that are not finite in float32.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"input file '{path}' does not exist")
    if path.suffix == ".npz":
        arrays, held = load_npz(path, ["x"])
        if "x" not in arrays:
            raise DataError(f"{path}: needs an array named 'x', found {', '.join(held) or 'none'}")
        x = arrays["x"]
        check_rows(x, str(path), "'x'")
    elif info.tabular:
        encoder = TabularEncoder.from_dict(info.tabular)
        x = encoder.transform(_csv_inputs(path, list(encoder.columns), raw=True), str(path))
    else:
        x = _csv_inputs(path, info.feature_names)
    check_features(x, str(path), "predicting")  # before the float32 cast, which would turn 1e308 into inf
    return x.astype(np.float32)


def _csv_inputs(path: Path, names: list[str] | None, raw: bool = False) -> np.ndarray:
    """The feature columns `names` of a CSV, float64 (N, len(names)); all columns when it has no header.
    `raw`: the cells as text, object (N, len(names)), for a `TabularEncoder` (a header is then required)."""
    rows = [(line, r) for line, r in enumerate(csv_rows(path), 1) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: empty file")
    first = rows[0][1]
    header = [h.strip() for h in first]
    if names and all(n in header for n in names):
        header, body = csv_header(first, path), rows[1:]
        cols = [header.index(n) for n in names]
        width = "the header has"
    elif not raw and all(_is_float(h) for h in header):
        cols, body = list(range(len(header))), rows
        width = "the first row has"
    else:
        missing = [n for n in (names or []) if n not in header]
        raise DataError(f"{path}: feature columns missing: {', '.join(missing[:5])}" if missing else f"{path}: cannot match columns to the model's features")
    if not body:
        raise DataError(f"{path}: no data rows below the header; give one row per sample")
    for i, (line, row) in enumerate(body):  # as training refuses them: a ragged row's cells may be in the wrong columns
        if len(row) != len(first):
            raise DataError(f"{path}: row {i} (line {line}) has {len(row)} fields but {width} {len(first)}; fix the ragged row")
    if raw:
        return np.asarray([[row[c] for c in cols] for _, row in body], dtype=object).reshape(len(body), len(cols))
    out = []
    for i, (line, row) in enumerate(body):
        try:
            out.append([float(row[c]) for c in cols])
        except ValueError:
            bad = next(c for c in cols if not _is_float(row[c]))
            column = f"column '{header[bad]}'" if body is not rows else f"column {bad + 1}"
            value = f"non-numeric value {row[bad].strip()!r}" if row[bad].strip() else "an empty cell"
            raise DataError(f"{path}: row {i} (line {line}) has {value} in {column}; give a number in every feature column") from None
    return np.asarray(out, dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
