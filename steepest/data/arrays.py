"""Out-of-core training data: `.npy` arrays memory-mapped from disk, read a micro-batch at a time.

    data: {format: memmap, path: DIR, batch_size: 4096, num_workers: 2}

DIR holds `x.npy` (N, ...) numeric inputs and `y.npy` (N,) labels or (N, k) targets, and optionally
`x_test.npy` / `y_test.npy` (an official test split; the validation split is then carved out of x).
Other file names: `data.options: {x: ..., y: ..., x_test: ..., y_test: ...}`.

Nothing of x is ever loaded whole: the splits are index sets over the file (`MemmapArrays`, a
map-style Dataset read through `steepest.data.stream.SampleLoader`), and every DataLoader process
maps the file itself (the arrays are reopened lazily in each process, never pickled). A micro-batch
is one sorted gather of its rows (the pages of the file are read in order, each once), converted to
float32 and normalized in the worker, and collated without per-row tensors (`collate_rows`, which
torch's `default_collate` uses for the rows `MemmapArrays.__getitems__` returns). Pages of the file
live in the kernel's page cache, not in the processes' anonymous memory: peak anonymous memory is
bounded by the batch size, whatever the size of the file.

The labels y are read into memory (8 bytes a row): the splits are stratified by them, and the task
is inferred from them as for in-memory data (integers with at most 100 distinct values:
classification; 0/1 columns: multilabel; otherwise regression).

Normalization (`data.normalize`): `standard` fits a per-feature (per-channel for (N, C, H, W)
inputs) mean and std on `fit_rows` training rows drawn at random (default `FIT_ROWS`), recorded in
`DataInfo.x_norm` like the in-memory path's (prediction and export apply it), and applied to every
batch as it is read; `none` reads the values as they are; given `{mean, std}` statistics are applied
as they are (one value per channel for (N, C, H, W) inputs, else one per feature). Those sampled rows are also
checked for NaN/inf; the rest of the file is not scanned before training (a NaN that slips through
is what the trainer's `skip_nonfinite` handles).

    >>> import numpy as np, tempfile, pathlib, shutil
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "x.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    >>> np.save(folder / "y.npy", np.array([0, 1, 0, 1, 0, 1]))
    >>> rows = MemmapArrays(folder / "x.npy", folder / "y.npy", index=np.array([4, 1]))
    >>> [x.tolist() for x, _ in rows.__getitems__([1, 0])]
    [[2.0, 3.0], [8.0, 9.0]]
    >>> shutil.rmtree(folder)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

from steepest.data.checks import check_classes, check_targets, class_count
from steepest.data.containers import DataBundle, DataInfo, DatasetSplit, task_from_labels
from steepest.data.imbalance import class_weights, sample_weights
from steepest.data.normalize import Standardizer
from steepest.data.splits import default_fractions, split_indices
from steepest.errors import DataError

FIT_ROWS = 8192  # training rows sampled to fit `normalize: standard` (and checked for NaN/inf)
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats (not complex, strings, objects, records)


# --------------------------------------------------------------------------- the Dataset


@dataclass(frozen=True)
class Targets:
    """How the stored targets of a batch become training targets (applied in the workers):
    `classification` -> int64 class ids (N,), through `remap` (stored id -> 0..k-1, -1 for none)
    when `data.classes` keeps some classes; `binary` / `regression` -> float32 (N, 1) from (N,) or
    (N, k) as stored, then `(y - mean) / std` when `y_norm` is given; `multilabel` -> float32 (N, k)."""

    task: str = "classification"
    remap: tuple[int, ...] | None = None
    y_norm: Standardizer | None = None

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Stored targets (n,) or (n, k) -> training targets, as the class docstring says."""
        if self.task == "classification":
            y = y.astype(np.int64).reshape(len(y))
            return np.asarray(self.remap, dtype=np.int64)[y] if self.remap is not None else y
        y = y.astype(np.float32)
        if y.ndim == 1 and self.task in ("binary", "regression"):
            y = y[:, None]
        return self.y_norm.transform(y) if self.y_norm is not None else y


class _Block:
    """The unique rows of one micro-batch, in file order: inputs float32 (u, ...) already
    normalized, training targets (u,) or (u, k)."""

    __slots__ = ("x", "y")

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y


class Row:
    """One sample of a gathered micro-batch: behaves as the pair `(x, y)` of tensors (len 2,
    indexable, iterable); `collate_rows` stacks a list of them without making per-row tensors."""

    __slots__ = ("block", "pos")

    def __init__(self, block: _Block, pos: int):
        self.block, self.pos = block, pos

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array((self.block.x, self.block.y)[i][self.pos]))

    def __iter__(self):
        yield self[0]
        yield self[1]


def _out(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array for a collated batch: in a DataLoader worker its memory is shared
    memory (as torch's own collate allocates it), so the batch reaches the main process uncopied;
    in the main process an ordinary numpy array (the allocator reuses its memory batch after batch)."""
    if get_worker_info() is None:
        return np.empty(shape, dtype)
    empty = torch.from_numpy(np.empty(0, dtype))
    storage = empty._typed_storage()._new_shared(int(np.prod(shape, dtype=np.int64)), device="cpu")
    return empty.new(storage).resize_(shape).numpy()


def collate_rows(batch: list[Row], *, collate_fn_map: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, ...) float32, y (B,) or (B, k)) of a list of `Row`s: one gather from their block per
    array (rows of other blocks fall back to stacking). Registered in torch's `default_collate_fn_map`
    (torch's documented way to extend `default_collate`), so the default collate uses it."""
    block = batch[0].block
    if any(r.block is not block for r in batch):
        return default_collate([tuple(r) for r in batch])
    pos = np.fromiter((r.pos for r in batch), dtype=np.intp, count=len(batch))
    if len(pos) == len(block.x) and get_worker_info() is None and (pos == np.arange(len(pos))).all():
        return torch.from_numpy(block.x), torch.from_numpy(block.y)  # rows asked for in file order (evaluation): as gathered
    arrays = []
    for a in (block.x, block.y):
        out = _out((len(pos), *a.shape[1:]), a.dtype)
        np.take(a, pos, axis=0, out=out, mode="clip")  # "clip": unbuffered (pos is in range)
        arrays.append(torch.from_numpy(out))
    return arrays[0], arrays[1]


default_collate_fn_map[Row] = collate_rows


def open_npy(path: str | Path, what: str = "inputs") -> np.memmap:
    """`path` memory-mapped read-only (no data read). DataError (one line, naming the file) when it
    is missing, is not a readable .npy file, holds Python objects or records, or is not numeric."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; format memmap needs the {what} there as a .npy file "
                        "(np.save or np.lib.format.open_memmap), or name it in data.options")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot memory-map it as a .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                        "write it with np.save (numeric dtype, no Python objects)") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in _NUMERIC_KINDS or array.dtype.fields is not None:
        dtype = getattr(array, "dtype", type(array).__name__)
        raise DataError(f"{path}: dtype {dtype} is not numeric; store the {what} as numbers "
                        "(e.g. np.save(path, x.astype(np.float32)); encode categories as integers)")
    return array


class MemmapArrays(Dataset):
    """Rows `index` (all rows when None) of the arrays in `x_path` (N, ...) and `y_path` (N,) or
    (N, k), as a map-style Dataset: `self[i]` is (x float32 tensor of the row's shape (at least
    (1,)), y tensor), x normalized by `x_norm` (a `Standardizer`; None: as stored) and y made
    training targets by `targets`. `__getitems__` reads a micro-batch with one sorted gather.

    The arrays are opened lazily in each process (a pickled or forked copy holds the paths, the
    index and the statistics, never the mapped data); every read is an index into the file."""

    def __init__(self, x_path: str | Path, y_path: str | Path, index: np.ndarray | None = None,
                 x_norm: Standardizer | None = None, targets: Targets | None = None):
        self.x_path, self.y_path = str(x_path), str(y_path)
        self.index = None if index is None else np.ascontiguousarray(index, dtype=np.int64)
        self.targets = targets or Targets()
        self.x_norm = x_norm
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._scale: tuple[np.ndarray, np.ndarray] | None = None
        self._rows = len(self.index) if self.index is not None else len(self._arrays()[0])

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._x is None:
            self._x, self._y = open_npy(self.x_path), open_npy(self.y_path, "targets")
        return self._x, self._y

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_x": None, "_y": None, "_scale": None}  # each process maps the files itself

    def __len__(self) -> int:
        return self._rows

    def _file_rows(self, indices: Any) -> np.ndarray:
        rows = np.asarray(indices, dtype=np.int64)
        if rows.size and (rows.min() < -self._rows or rows.max() >= self._rows):
            bad = rows[(rows < -self._rows) | (rows >= self._rows)][0]
            raise IndexError(f"index {bad} is out of range for {self._rows} rows")
        rows = np.where(rows < 0, rows + self._rows, rows)
        return self.index[rows] if self.index is not None else rows

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Stored rows (u, ...) -> float32, normalized in place."""
        x = np.array(x, dtype=np.float32, copy=None, order="C")
        if x.ndim == 1:
            x = x[:, None]
        if self.x_norm is not None:
            if self._scale is None:
                shape = self.x_norm._shape(x)
                self._scale = (np.asarray(self.x_norm.mean, np.float32).reshape(shape),
                               np.asarray(self.x_norm.std, np.float32).reshape(shape))
            mean, std = self._scale
            np.subtract(x, mean, out=x)
            np.divide(x, std, out=x)
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._file_rows([i])
        x, y = self._arrays()
        return torch.from_numpy(self._inputs(x[rows])[0]), torch.from_numpy(np.array(self.targets(np.asarray(y[rows]))[0]))

    def __getitems__(self, indices: list[int]) -> list[Row]:
        """The samples `indices` (positions in this split), in that order, read with one gather of
        their rows sorted by file position (a repeated index is read once). Returns `Row`s that
        torch's default collate stacks with `collate_rows` (one copy, no per-row tensors)."""
        rows = self._file_rows(indices)
        unique, inverse = np.unique(rows, return_inverse=True)
        x, y = self._arrays()
        block = _Block(self._inputs(x[unique]), self.targets(np.asarray(y[unique])))
        return [Row(block, k) for k in inverse.reshape(-1).tolist()]


# --------------------------------------------------------------------------- reading a folder


@dataclass
class MemmapSource:
    """A folder of .npy arrays checked and opened (nothing of x read): the files, x's shape and
    dtype, the labels in memory ((N,) or (N, k), and the test split's when given), and the number
    of rows `fit_rows` that `normalize: standard` samples."""

    folder: Path
    x_path: Path
    y_path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    y: np.ndarray
    x_test_path: Path | None = None
    y_test_path: Path | None = None
    y_test: np.ndarray | None = None
    fit_rows: int = FIT_ROWS


def _check_pair(x: np.ndarray, y: np.ndarray, x_path: Path, y_path: Path) -> None:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{x_path}: shape {x.shape} has no rows; expected (n_samples, ...) with at least one sample")
    if x.flags.f_contiguous and not x.flags.c_contiguous:
        raise DataError(f"{x_path}: stored in Fortran (column) order, so a row is not contiguous on disk; "
                        "save it again with np.save(path, np.ascontiguousarray(x))")
    if y.ndim not in (1, 2):
        raise DataError(f"{y_path}: shape {y.shape}; expected ({len(x)},) labels or ({len(x)}, k) targets, one row per row of {x_path.name}")
    if len(y) != len(x):
        raise DataError(f"{y_path}: {len(y)} rows but {x_path.name} has {len(x)}; give one target row per input row")


def read_memmap(path: str | Path, x: str = "x.npy", y: str = "y.npy", x_test: str = "x_test.npy", y_test: str = "y_test.npy",
                fit_rows: int = FIT_ROWS) -> MemmapSource:
    """Open the arrays of folder `path`: `x` (N, ...) numeric inputs, `y` (N,) or (N, k) targets
    (read into memory), and the official test split `x_test`/`y_test` when both files exist (file
    names relative to the folder). `fit_rows` (>= 1): training rows sampled to fit `normalize:
    standard`. DataError (one line, naming the file and the fix) for a missing folder or file, an
    unreadable or non-numeric array, Fortran order, zero rows, or y not one row per row of x."""
    folder = Path(path)
    if folder.is_file():
        raise DataError(f"data.path: '{folder}' is a file; format memmap reads a folder holding {x} and {y} (an .npz file is "
                        "format: npz)")
    if not folder.is_dir():
        raise DataError(f"data.path: folder '{folder}' does not exist; format memmap reads a folder holding {x} and {y}")
    if isinstance(fit_rows, bool) or not isinstance(fit_rows, int) or fit_rows < 1:
        raise DataError(f"data.options.fit_rows must be a whole number of rows, at least 1; got {fit_rows!r}")
    x_path, y_path = folder / x, folder / y
    xs, ys = open_npy(x_path, "inputs"), open_npy(y_path, "targets")
    _check_pair(xs, ys, x_path, y_path)
    source = MemmapSource(folder, x_path, y_path, tuple(int(d) for d in xs.shape), xs.dtype, np.array(ys), fit_rows=int(fit_rows))
    xt_path, yt_path = folder / x_test, folder / y_test
    if xt_path.is_file() != yt_path.is_file():
        have, missing = (xt_path, yt_path) if xt_path.is_file() else (yt_path, xt_path)
        raise DataError(f"{have}: found without {missing.name}; give both (an official test split) or neither")
    if xt_path.is_file():
        xt, yt = open_npy(xt_path, "test inputs"), open_npy(yt_path, "test targets")
        _check_pair(xt, yt, xt_path, yt_path)
        if xt.shape[1:] != xs.shape[1:] or yt.shape[1:] != ys.shape[1:]:
            raise DataError(f"{xt_path}: test rows have shape {xt.shape[1:]} and targets {yt.shape[1:]}, training rows "
                            f"{xs.shape[1:]} and {ys.shape[1:]}; the test arrays must match {x} and {y}")
        source.x_test_path, source.y_test_path, source.y_test = xt_path, yt_path, np.array(yt)
    return source


# --------------------------------------------------------------------------- the bundle


def _sample_rows(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """min(k, n) distinct positions in range(n), sorted (Floyd's algorithm for k << n: no array of n)."""
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def _read_checked(x: np.ndarray, rows: np.ndarray, path: Path) -> np.ndarray:
    """Rows `rows` (sorted) of x as float32 (k, ...); DataError naming the first row that holds NaN,
    inf or a value beyond the float32 range training uses (it becomes inf in float32)."""
    sample = np.asarray(x[rows], dtype=np.float32)
    bad = ~np.isfinite(sample)
    if bad.any():
        row = int(rows[np.flatnonzero(bad.reshape(len(rows), -1).any(axis=1))[0]])
        raise DataError(f"{path}: row {row} holds NaN, inf or a value beyond float32; drop or impute that row before training")
    return sample


def _x_norm(cfg, source: MemmapSource, train: np.ndarray, per_channel: bool) -> Standardizer | None:
    """None for `normalize: none`; given statistics; or ones fitted on up to `fit_rows` training
    rows. Up to `fit_rows` rows of the whole file (and of x_test) are checked finite first."""
    rng = np.random.default_rng(cfg.split_seed)
    for path in (source.x_path, source.x_test_path):
        if path is not None:
            x = open_npy(path)
            _read_checked(x, _sample_rows(rng, len(x), source.fit_rows), path)
    sample = _read_checked(open_npy(source.x_path), train[_sample_rows(rng, len(train), source.fit_rows)], source.x_path)
    if cfg.normalize == "none":
        return None
    if cfg.normalize == "standard":
        return Standardizer.fit(sample if sample.ndim > 1 else sample[:, None], per_channel)
    mean, std = list(cfg.normalize.mean), list(cfg.normalize.std)
    width = source.shape[1] if per_channel else int(np.prod(source.shape[1:], dtype=np.int64))
    if len(mean) != width:
        raise DataError(f"data.normalize: {len(mean)} means and stds for {source.x_path.name} rows of shape {source.shape[1:]}; "
                        f"give {width}, one per {'channel' if per_channel else 'feature'}, or use normalize: standard")
    return Standardizer(tuple(float(m) for m in mean), tuple(float(s) for s in std), per_channel)


def load_memmap(cfg, seed: int = 0) -> Any:
    """The `DataBundle` of `data: {format: memmap, path: DIR}` (cfg: the recipe's DataConfig;
    `cfg.options` go to `read_memmap`): `DatasetSplit`s whose datasets are `MemmapArrays` index
    views of DIR/x.npy (train/val/test by `data.split`, stratified by class and seeded by
    `data.split_seed`, or `split_order: ordered`; the official test split when x_test.npy is
    there), labels (N,) (classification) or targets (N, k) in memory, and `DataInfo` with the
    normalization statistics (see the module docstring). `data.subset`, `data.classes`,
    `data.num_classes`, `data.task` and `data.balance: class_weights | sampler` apply as for
    in-memory data; `balance: oversample | smote | undersample` would materialize resampled inputs
    and is a DataError. `seed` is unused (the split has its own seed), as for other formats."""
    # the package's own types, imported here: steepest.data.bundle (which defines them) imports this module

    source = read_memmap(cfg.path, **cfg.options)
    where = str(source.x_path)
    y, y_test = source.y, source.y_test
    all_y = y if y_test is None else np.concatenate([y, y_test])
    task = cfg.task if cfg.task != "auto" else task_from_labels(all_y)
    num_classes = None
    if task in ("classification", "binary"):
        num_classes = cfg.num_classes or (2 if task == "binary" else None)
        check_targets(all_y, task, num_classes, f"{source.y_path} labels")
        num_classes = num_classes or class_count(all_y, f"{source.y_path} labels", inferred=cfg.task == "auto")
    else:
        check_targets(all_y, task, None, f"{source.y_path} targets")
    if cfg.augment and cfg.augment.get("copies"):
        raise DataError("data.augment.copies draws augmented copies of the training set into memory; with format memmap "
                        "leave out copies (the augmentation then runs on each batch)")
    if cfg.balance in ("oversample", "smote", "adasyn", "undersample"):
        raise DataError(f"data.balance: {cfg.balance} resamples the inputs in memory; with format memmap use balance: sampler "
                        "(the same class mix, drawn by the loader) or class_weights")

    keep = np.arange(len(y))
    keep_test = None if y_test is None else np.arange(len(y_test))
    remap = None
    if cfg.classes is not None:
        wanted = list(cfg.classes)
        if task != "classification":
            raise DataError(f"data.classes selects classes of a classification data set; {source.y_path} holds a {task} task")
        if any(not 0 <= c < num_classes for c in wanted) or len(set(wanted)) != len(wanted) or len(wanted) < 2:
            raise DataError(f"data.classes must list at least 2 distinct class ids in [0, {num_classes}); got {wanted}")
        table = np.full(num_classes, -1, dtype=np.int64)
        table[wanted] = np.arange(len(wanted))
        remap = tuple(int(v) for v in table)  # stored id -> kept id, applied to each batch in the workers
        keep = np.flatnonzero(np.isin(y, wanted))
        keep_test = None if y_test is None else np.flatnonzero(np.isin(y_test, wanted))
        num_classes = len(wanted)
    labels = None  # class ids (n,) of the kept rows: the splits are stratified by them
    if task in ("classification", "binary") and (y.ndim == 1 or y.shape[1] == 1):
        labels = y[keep].astype(np.int64).reshape(-1)
        labels = np.asarray(remap, dtype=np.int64)[labels] if remap is not None else labels
        check_classes(labels, f"{source.y_path} labels")

    n = len(keep)
    if keep_test is not None:
        fr = cfg.split or default_fractions(n + len(keep_test))
        val_share = fr[1] / max(fr[0] + fr[1], 1e-12)
        tr, va, _ = split_indices(n, (1 - val_share, val_share, 0.0), labels if cfg.stratify else None, cfg.split_seed)
        te = None
    else:
        fr = cfg.split or default_fractions(n)
        if cfg.split_order == "ordered":
            a, b = int(round(fr[0] * n)), int(round((fr[0] + fr[1]) * n))
            tr, va, te = np.arange(a), np.arange(a, b), np.arange(b, n)
        else:
            tr, va, te = split_indices(n, fr, labels if cfg.stratify else None, cfg.split_seed)
    tr, va = keep[tr], keep[va]
    te = keep[te] if te is not None else None
    needed = [("training", tr), ("validation", va)] + ([("test", te)] if te is not None and fr[2] > 0 else [])
    for name, idx in needed:
        if len(idx) == 0:
            raise DataError(f"{where}: the {name} split is empty ({n} rows, data.split {list(fr)}); add rows or change data.split")
    if cfg.subset is not None and cfg.subset < len(tr):
        tr = tr[np.sort(np.random.default_rng(cfg.split_seed).permutation(len(tr))[: cfg.subset])]

    per_channel = len(source.shape) == 4
    x_norm = _x_norm(cfg, source, tr, per_channel)
    y_norm = None
    if task == "regression" and cfg.normalize_targets:
        y_norm = Standardizer.fit(Targets("regression")(y[tr]))
    targets = Targets(task, remap, y_norm)

    def split(x_path: Path, y_path: Path, stored: np.ndarray, index: np.ndarray) -> Any:
        dataset = MemmapArrays(x_path, y_path, index, x_norm, targets)
        return DatasetSplit(dataset, torch.from_numpy(np.ascontiguousarray(targets(stored[index]))))

    train, val = split(source.x_path, source.y_path, y, tr), split(source.x_path, source.y_path, y, va)
    if keep_test is not None:
        test = split(source.x_test_path, source.y_test_path, y_test, keep_test)
    else:
        test = split(source.x_path, source.y_path, y, te)
    sw = cw = None
    if cfg.balance in ("class_weights", "sampler") and task in ("classification", "binary"):
        train_labels = train.y.reshape(-1).long()
        if cfg.balance == "sampler":
            sw = sample_weights(train_labels, num_classes or 2)
        else:
            cw = class_weights(train_labels, num_classes or 2)
    y_width = 1 if y.ndim == 1 else int(y.shape[1])
    num_outputs = num_classes if task == "classification" else (1 if task == "binary" else y_width)
    info = DataInfo(
        source=str(source.folder), task=task, input_shape=tuple(source.shape[1:]) or (1,), num_outputs=int(num_outputs),
        num_classes=num_classes, kind="image" if per_channel else "tabular",
        sizes={"train": len(train), "val": len(val), "test": len(test)}, fractions=tuple(float(f) for f in fr),
        x_norm=x_norm.to_dict() if x_norm else None, y_norm=y_norm.to_dict() if y_norm else None,
    )
    return DataBundle(train, val, test, info, sample_weights=sw, class_weights=cw)
