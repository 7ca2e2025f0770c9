"""Hugging Face `datasets` as a data source: a `Dataset` memory-mapped from Arrow files (a
`save_to_disk` folder, or Parquet/CSV/JSON/Arrow files converted once into the datasets cache),
read a micro-batch at a time and never copied into Python lists; or an `IterableDataset` that
streams the files in order (`streaming: true`).

    data: {format: hf_dataset, path: digits_hf/, target: label}          # a Dataset.save_to_disk folder
    data: {format: hf_dataset, path: "shards/*.parquet", target: label,  # data files (a glob, or a folder of them)
           options: {input_columns: [pixels], cache_dir: /scratch/hf}}
    data: {format: hf_dataset, path: train.csv, target: label, options: {streaming: true}}

`data.options` (checked against `read_hf_dataset`'s signature by `steepest validate`):
`input_columns` (default: every column but the target), `split` (the split of a saved
`DatasetDict`, or of data files, where HF's slicing works: "train[:10%]"), `file_format`
(parquet | csv | json | arrow | auto: from the extension, .gz/.bz2/.xz/.zst allowed), `streaming`
(also `data.stream: true`), `tokens`, `max_length`, `pad_id` (token sequences, below) and
`cache_dir` (where `load_dataset` writes its Arrow copy of data files; default HF's
~/.cache/huggingface/datasets).

Inputs, the rule. Each input column is a number (a numeric or bool `Value`, or a `ClassLabel`),
a vector (a `List` of numbers of one length in every row, or an `Array2D..5D`), or a token-id
sequence (a one-level `List` of integers, unless `tokens: false`). Without a token column a
sample is `(x, y)`: x the float32 vector (F,) of the input columns in order (each number one
feature, each vector its flattened values), standardized with statistics fitted on (up to
`FIT_ROWS` of) the training rows (`data.normalize`; recorded in `DataInfo.x_norm`, so `Predictor`
applies them to raw rows). With a token column a sample is a dict `{column: tensor, ...,
"labels": y}` (steepest.training.batch: the model is called as `model(**inputs)`, e.g. a
transformers model with `input_ids`/`attention_mask`): each token column padded or truncated to
`max_length` (default: the longest sequence in the data) with `pad_id`, except `attention_mask`,
`token_type_ids` and `special_tokens_mask`, padded with 0 (what transformers'
DataCollatorWithPadding does); numbers become float32 scalars, vectors float32 (F,); nothing is
standardized. Strings, images and other features are refused with a one-line DataError.

Targets. A `ClassLabel` is a classification target with its class names; strings become class ids
in sorted order; integers with at most 100 distinct values are classes, other numbers regression
(as `steepest.data.bundle.infer_task`); a list of 0/1 is multilabel. `data.task` and
`data.num_classes` override. The target column is read whole into memory (N numbers: small).

Splits. Map-style data is split into train/val/test index sets by `split_indices` (stratified on
the target, `data.split` / `data.split_seed`, `split_order: ordered` for contiguous stretches);
each split is a `DatasetSplit` over `HFRows`, whose `__getitems__` reads a whole micro-batch in one
Arrow gather (torch's DataLoader fetcher calls it). A stream cannot be shuffled by index, so its
rows are dealt to train/val/test by position: row i goes to the split `part_table[i % BLOCK]`, a
seeded arrangement of BLOCK slots in the `data.split` proportions (exact per block); the task,
class names and normalization come from the features and the first `PEEK_ROWS` rows.

Offline: HF_DATASETS_OFFLINE=1 is set (unless already set) before `datasets` is imported, and
`path` is always a local folder or local files read by a packaged builder, never a Hub name.

Source: Hugging Face datasets documentation, "Load" (packaged builders and data_files), "Use with
PyTorch" (formats, IterableDataset in a DataLoader, `datasets.distributed.split_dataset_by_node`),
"Stream", and `Dataset.__getitems__`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from steepest.data.checks import check_classes, check_targets, class_count
from steepest.data.containers import MAX_AUTO_CLASSES, DataBundle, DataInfo, DatasetSplit
from steepest.data.imbalance import balance
from steepest.data.normalize import Standardizer
from steepest.data.splits import default_fractions, split_indices
from steepest.errors import DataError, did_you_mean

# DataBundle, DataInfo and DatasetSplit come from the package (steepest.data), not from bundle.py, whose
# load_data imports this module: the package's names are what a reader of a format builds.

INSTALL = "pip install 'steepest[hf]'"
BUILDERS = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "arrow": "arrow"}
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
ZERO_PADDED = ("attention_mask", "token_type_ids", "special_tokens_mask")
FIT_ROWS = 100_000  # training rows the standardization statistics are fitted on (a seeded sample beyond that)
READ_ROWS = 4096  # rows per Arrow read when fitting statistics or streaming
PEEK_ROWS = 10_000  # stream rows read first to infer the task, the classes and the statistics
BLOCK = 10_000  # a stream is dealt to train/val/test in blocks of this many rows


def _datasets():
    """The `datasets` module, imported offline; a one-line DataError when the extra is missing."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise DataError(f"data.format hf_dataset needs the Hugging Face datasets package: {INSTALL}") from None
    return datasets


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


@dataclass(frozen=True)
class Column:
    """An input column and how it enters a sample: kind "number" (one feature), "vector" (`width`
    features) or "tokens" (ids padded or truncated to `width` with `pad`)."""

    name: str
    kind: str
    width: int = 1
    pad: int = 0


@dataclass
class HFSource:
    """An opened Hugging Face data set (`datasets.Dataset`, memory-mapped, or
    `datasets.IterableDataset`), its target column and the plan of its input columns. `length`: rows
    (None for a stream of CSV/JSON/Arrow files, whose length is unknown until read)."""

    dataset: Any
    where: str
    target: str
    columns: tuple[Column, ...]
    features: Any
    streaming: bool
    length: int | None

    @property
    def tokens(self) -> bool:
        return any(c.kind == "tokens" for c in self.columns)

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            names += [c.name] if c.kind == "number" else [f"{c.name}[{j}]" for j in range(c.width)]
        return names


# -- opening ----------------------------------------------------------------------------------------
def _is_saved(folder: Path) -> bool:
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def _suffix(path: str) -> str:
    name = Path(path).name.lower()
    for ending in COMPRESSED:
        name = name.removesuffix(ending)
    return Path(name).suffix.lstrip(".")


def _data_files(path: str) -> list[str]:
    """The data files `path` names: a file, a glob, or a folder's files of known extensions."""
    where = Path(path)
    if where.is_dir():
        files = sorted(str(p) for p in where.rglob("*") if p.is_file() and _suffix(str(p)) in BUILDERS)
        if not files:
            raise DataError(f"data.path: folder '{path}' is neither a save_to_disk folder (state.json or dataset_dict.json) nor "
                            f"holds .parquet/.csv/.json/.arrow files; give one of those, a data file or a glob")
        return files
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if Path(f).is_file())
        if not files:
            raise DataError(f"data.path: no file matches '{path}'; check the pattern (e.g. shards/*.parquet)")
        return files
    if not where.is_file():
        raise DataError(f"data.path: '{path}' does not exist; give a save_to_disk folder, a .parquet/.csv/.json/.arrow file or a glob")
    return [path]


def _builder(files: list[str], file_format: str) -> str:
    if file_format != "auto":
        return file_format
    kinds = {BUILDERS.get(_suffix(f)) for f in files}
    if None in kinds:
        odd = next(f for f in files if _suffix(f) not in BUILDERS)
        raise DataError(f"data.path: cannot tell the format of '{odd}' from its extension; set data.options.file_format: "
                        "parquet | csv | json | arrow")
    if len(kinds) > 1:
        raise DataError(f"data.path: the files mix formats ({', '.join(sorted(kinds))}); give files of one format (a narrower "
                        "glob) or set data.options.file_format")
    return kinds.pop()


def _parquet_rows(files: list[str]) -> int | None:
    """Rows of Parquet files from their footers (nothing else read); None when unreadable."""
    try:
        import pyarrow.parquet as pq

        return int(sum(pq.ParquetFile(f).metadata.num_rows for f in files))
    except Exception:  # noqa: BLE001 - the length is an optimization: unknown is fine
        return None


def _open(path: str, split: str, file_format: str, streaming: bool, cache_dir: str | None) -> tuple[Any, int | None]:
    datasets = _datasets()
    folder = Path(path)
    if folder.is_dir() and _is_saved(folder):
        try:
            found = datasets.load_from_disk(path)
        except Exception as exc:  # noqa: BLE001 - datasets' own error, made one line
            raise DataError(f"data.path: cannot load save_to_disk folder '{path}' ({_first_line(exc)})") from None
        if isinstance(found, datasets.DatasetDict):
            if split not in found:
                raise DataError(f"data.options.split: '{split}' is not a split of '{path}';{did_you_mean(split, list(found))} "
                                f"splits: {', '.join(found)}")
            found = found[split]
        elif split != "train":
            raise DataError(f"data.options.split: '{path}' holds one Dataset, not a DatasetDict of splits; drop data.options.split")
        length = len(found)
        return (found.to_iterable_dataset() if streaming else found), length
    files = _data_files(path)
    builder = _builder(files, file_format)
    try:
        found = datasets.load_dataset(builder, data_files=files, split=split, streaming=streaming, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - a bad file or split: datasets' own error, made one line
        raise DataError(f"data.path: datasets could not read '{path}' as {builder} ({_first_line(exc)}); check the files, "
                        "data.options.file_format and data.options.split") from None
    if not streaming:
        return found, len(found)
    return found, (_parquet_rows(files) if builder == "parquet" and split == "train" else None)


# -- columns ----------------------------------------------------------------------------------------
def _numeric(dtype: str) -> bool:
    return dtype == "bool" or dtype.startswith(("int", "uint", "float", "bfloat"))


def _leaf(feature: Any, datasets: Any) -> tuple[str | None, int]:
    """(dtype of the numbers inside, list nesting depth) of a feature; dtype None when not numeric."""
    f = datasets.features
    depth = 0
    while isinstance(feature, (f.List, f.LargeList)):
        feature, depth = feature.feature, depth + 1
    if isinstance(feature, (f.Array2D, f.Array3D, f.Array4D, f.Array5D)):
        return (feature.dtype if _numeric(feature.dtype) else None), depth + 1
    if isinstance(feature, f.ClassLabel):
        return "int64", depth
    if isinstance(feature, f.Value) and _numeric(feature.dtype):
        return feature.dtype, depth
    return None, depth


def _list_lengths(dataset: Any, name: str) -> tuple[int, int] | None:
    """(shortest, longest) list in a column of a map-style dataset, from the Arrow offsets alone."""
    try:
        import pyarrow.compute as pc

        lengths = pc.list_value_length(dataset.data.column(name))
        low, high = pc.min_max(lengths).values()
        return int(low.as_py()), int(high.as_py())
    except Exception:  # noqa: BLE001 - not a list column, or an Arrow type without offsets
        return None


def _plan(dataset: Any, features: Any, where: str, target: str, input_columns: list[str] | None, tokens: bool,
          max_length: int | None, pad_id: int, first: Any, streaming: bool) -> tuple[Column, ...]:
    """The input columns' plan (`first`: the first row as an Arrow table; list lengths of a
    map-style dataset are checked over every row from the Arrow offsets)."""
    datasets = _datasets()
    names = list(features)
    if target not in names:
        raise DataError(f"data.target: column '{target}' not in {where};{did_you_mean(target, names)} columns: {', '.join(names)}")
    given = input_columns is not None
    wanted = list(input_columns) if given else [n for n in names if n != target]
    if not wanted:
        raise DataError(f"{where}: no input columns besides the target '{target}'; the data needs at least one feature column")
    columns = []
    for name in wanted:
        if name not in names:
            raise DataError(f"data.options.input_columns: column '{name}' not in {where};{did_you_mean(name, names)} "
                            f"columns: {', '.join(names)}")
        if name == target:
            raise DataError(f"data.options.input_columns: '{name}' is the target column; leave it out of the inputs")
        dtype, depth = _leaf(features[name], datasets)
        if dtype is None:
            fix = "leave it out of data.options.input_columns" if given else "list the numeric columns in data.options.input_columns"
            raise DataError(f"{where}: input column '{name}' holds {features[name]}, not numbers; {fix} or encode it to numbers "
                            "first (a ClassLabel, a tokenizer's input_ids)")
        is_int = dtype.startswith(("int", "uint"))
        if depth == 0:
            columns.append(Column(name, "number"))
        elif depth == 1 and is_int and tokens:
            lengths = None if streaming else _list_lengths(dataset, name)
            length = max_length or (lengths[1] if lengths else None)
            if not length:
                raise DataError(f"{where}: token column '{name}' needs data.options.max_length (the padded length) when streaming")
            columns.append(Column(name, "tokens", int(length), 0 if name in ZERO_PADDED else int(pad_id)))
        else:
            lengths = None if streaming else _list_lengths(dataset, name)
            if lengths and lengths[0] != lengths[1]:
                extra = " or set data.options.tokens: true for token ids" if is_int and depth == 1 else ""
                raise DataError(f"{where}: column '{name}' holds lists of {lengths[0]} to {lengths[1]} numbers; a vector input needs "
                                f"one length in every row: pad or truncate it first{extra}")
            width = int(_values(first.column(name), name, where).size)
            if width == 0:
                raise DataError(f"{where}: column '{name}' holds empty lists; a vector input needs at least one number per row")
            columns.append(Column(name, "vector", width))
    if any(c.kind == "tokens" for c in columns) and "labels" in wanted:
        raise DataError("data.options.input_columns: 'labels' is where a dict batch carries the target; rename that column")
    return tuple(columns)


def read_hf_dataset(path: str, target: str, input_columns: list[str] | None = None, split: str = "train",
                    file_format: Literal["auto", "parquet", "csv", "json", "arrow"] = "auto", streaming: bool = False,
                    tokens: bool = True, max_length: int | None = None, pad_id: int = 0, cache_dir: str | None = None) -> HFSource:
    """Open `path` (a `save_to_disk` folder, a data file, a glob or a folder of data files) with
    `datasets`, offline, and plan its input columns (the rule in the module docstring). Data files
    are converted once into Arrow files in the datasets cache (`cache_dir`; reused while the files
    are unchanged); a stream reads nothing ahead. Beyond that only the first row (and, for lists,
    the Arrow offsets) is read. The keyword arguments are what `data.options` accepts. DataError
    (one line) for a missing path or column, an unknown format, a non-numeric or ragged input
    column, no rows, or `datasets` missing."""
    if max_length is not None and max_length < 1:
        raise DataError(f"data.options.max_length: must be at least 1 (got {max_length})")
    dataset, length = _open(str(path), split, file_format, streaming, cache_dir)
    where = str(path)
    if streaming and dataset.features is None:  # CSV/JSON streams: the features of the first rows
        try:
            dataset = dataset._resolve_features()
        except Exception as exc:  # noqa: BLE001 - an unreadable first row
            raise DataError(f"{where}: cannot read the first rows ({_first_line(exc)})") from None
    features = dataset.features
    if length == 0:
        raise DataError(f"{where}: no rows; the data set is empty")
    wanted = [c for c in (input_columns or list(features)) if c in features and c != target]
    if streaming:
        first = next(iter(dataset.select_columns(wanted).with_format("arrow").iter(batch_size=1)), None) if wanted else None
        if first is None and wanted:
            raise DataError(f"{where}: no rows; the data set is empty")
    else:
        first = dataset.with_format("arrow", columns=wanted)[0:1] if wanted else None
    columns = _plan(dataset, features, where, target, input_columns, tokens, max_length, pad_id, first, streaming)
    return HFSource(dataset, where, target, columns, features, streaming, length)


# -- samples ----------------------------------------------------------------------------------------
def _array(column: Any) -> Any:
    """One Arrow array of a (chunked) column, extension types (Array2D..5D) as their storage."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.storage if isinstance(arr, pa.ExtensionArray) else arr


def _is_list(arr: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)


def _values(column: Any, name: str, where: str) -> np.ndarray:
    """An Arrow column of B rows as numpy: (B,) for scalars (strings as an object array), (B, W)
    for lists of one length (nested lists and Array2D..5D flattened row by row). Lists of
    different lengths, or a missing list, are a DataError naming the column."""
    arr = _array(column)
    rows, width, nested = len(arr), 1, False
    while _is_list(arr):
        if arr.null_count:
            raise DataError(f"{where}: column '{name}' has a missing value where a list is expected; fill or drop those rows first")
        if hasattr(arr, "offsets"):
            lengths = np.diff(arr.offsets.to_numpy())
            n = int(lengths[0]) if len(lengths) else 0
            if (lengths != n).any():
                raise DataError(f"{where}: column '{name}' holds lists of {lengths.min()} to {lengths.max()} numbers; it needs one "
                                "length in every row: pad or truncate it first")
        else:
            n = arr.type.list_size
        width, nested, arr = width * n, True, arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    return values.reshape(rows, width) if nested else values


def _padded(column: Any, c: Column) -> np.ndarray:
    """Token-id lists of B rows as int64 (B, c.width): truncated, then padded with c.pad (a
    missing list is all padding)."""
    arr = _array(column)
    rows, width = len(arr), c.width
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    if hasattr(arr, "offsets"):
        offsets = arr.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
    else:
        offsets = np.arange(rows + 1, dtype=np.int64) * arr.type.list_size
    lengths = np.minimum(np.diff(offsets), width)
    out = np.full((rows, width), c.pad, dtype=np.int64)
    inside = np.arange(width)[None, :] < lengths[:, None]
    out[inside] = values[(offsets[:-1, None] + np.arange(width)[None, :])[inside]]
    return out


def _inputs(table: Any, columns: tuple[Column, ...], where: str) -> np.ndarray:
    """The (B, F) float32 input matrix of an Arrow table of B rows (number and vector columns, in
    order)."""
    parts = [_values(table.column(c.name), c.name, where).reshape(table.num_rows, -1).astype(np.float32, copy=False)
             for c in columns]
    for c, part in zip(columns, parts):
        if part.shape[1] != c.width:
            raise DataError(f"{where}: column '{c.name}' has rows of {part.shape[1]} numbers, the first row {c.width}; a vector "
                            "input needs one length in every row")
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _samples(table: Any, y: torch.Tensor, columns: tuple[Column, ...], norm: tuple[np.ndarray, np.ndarray] | None,
             where: str) -> list[Any]:
    """An Arrow table of B rows as B samples: (x, y) with x float32 (F,), standardized by `norm`
    ((mean, 1/std)); or dicts {column: tensor, ..., "labels": y} when a column holds token ids."""
    if not any(c.kind == "tokens" for c in columns):
        x = _inputs(table, columns, where)
        if norm is not None:
            x = (x - norm[0]) * norm[1]
        return list(zip(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y))
    tensors = {}
    for c in columns:
        if c.kind == "tokens":
            tensors[c.name] = torch.from_numpy(_padded(table.column(c.name), c))
        else:
            m = torch.from_numpy(np.ascontiguousarray(_inputs(table, (c,), where)))
            tensors[c.name] = m[:, 0] if c.kind == "number" else m
    return [{**{k: v[i] for k, v in tensors.items()}, "labels": y[i]} for i in range(len(y))]


class HFRows(Dataset):
    """Rows `rows` (indices into the HF `dataset`) as a map-style torch Dataset of samples (x (F,)
    float32, y) or dicts (the rule in the module docstring), gathered from the memory-mapped Arrow
    table (`with_format("arrow")`: a batch of rows is one Arrow `take`, then numpy views; about 8x
    faster than HF's per-column numpy formatting for 64 columns: 6 ms against 48 ms per 64 rows). `y`: the encoded targets of
    those rows, (N,) int64 class ids or (N, k) float32. `norm`: (mean, 1/std) float32 (F,) or None.

    `__getitems__(indices)` reads a whole micro-batch with one gather (torch's DataLoader fetcher
    calls it when it exists; steepest's SampleLoader passes it through)."""

    def __init__(self, source: HFSource, rows: np.ndarray, y: torch.Tensor, norm: tuple[np.ndarray, np.ndarray] | None = None):
        self.table = source.dataset.with_format("arrow", columns=[c.name for c in source.columns])
        self.columns, self.where = source.columns, source.where
        self.rows, self.y, self.norm = np.asarray(rows, dtype=np.int64), y, norm

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        positions = np.asarray(indices, dtype=np.int64)
        return _samples(self.table[self.rows[positions].tolist()], self.y[torch.from_numpy(positions)], self.columns, self.norm,
                        self.where)


def _part_table(fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """BLOCK slots, int8 split ids (0 train, 1 val, 2 test) in `fractions` (largest remainder),
    in a seeded order: stream row i goes to split table[i % BLOCK]."""
    quotas = np.asarray(fractions, dtype=np.float64) * BLOCK
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts))[: BLOCK - counts.sum()]:
        counts[i] += 1
    return np.repeat(np.arange(3, dtype=np.int8), counts)[np.random.default_rng(seed).permutation(BLOCK)]


def _part_sizes(length: int, table: np.ndarray) -> list[int]:
    """Rows of a stream of `length` rows dealt to train, val and test by `table` (`_part_table`)."""
    full, rest = divmod(length, BLOCK)
    return [int(full * np.count_nonzero(table == k) + np.count_nonzero(table[:rest] == k)) for k in range(3)]


class HFStream(IterableDataset):
    """A Hugging Face `IterableDataset` as a torch IterableDataset of samples ((x, y), or dicts
    when a column holds token ids; as `HFRows`), in file order, read `READ_ROWS` rows at a time.

    `part` (0 train, 1 val, 2 test) keeps the rows dealt to that split by `_part_table(fractions,
    seed)`; None keeps every row. Every worker and every rank that iterates it reads the whole
    stream (HF's own worker sharding is not used: `IterableDataset.iter` bypasses it), so the
    loader decides which rows each takes (steepest.data.stream.IterableLoader deals them by stream
    index). `set_epoch(e)` is passed to the HF stream (it reseeds HF's shuffling, when the stream
    is shuffled; file order otherwise). `len()` is known for save_to_disk folders and Parquet
    files, else TypeError (the run then needs a step budget).

    `targets.encode(raw)` turns a batch of raw target values into the target tensor; `norm` is
    (mean, 1/std) float32 (F,) or None."""

    def __init__(self, source: HFSource, targets: Targets, norm: tuple[np.ndarray, np.ndarray] | None = None,
                 part: int | None = None, fractions: tuple[float, float, float] | None = None, seed: int = 0):
        if part is not None and fractions is None:
            raise ValueError("part needs the fractions the stream is dealt by")
        wanted = [c.name for c in source.columns] + [source.target]
        self.stream = source.dataset.select_columns(wanted).with_format("arrow")
        self.columns, self.target, self.where, self.length = source.columns, source.target, source.where, source.length
        self.targets, self.norm, self.part = targets, norm, part
        self.table = _part_table(fractions, seed) if part is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(epoch)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"the stream of {self.where} has no known length")
        return self.length if self.table is None else _part_sizes(self.length, self.table)[self.part]

    def __iter__(self):
        start = 0
        for batch in self.stream.iter(batch_size=READ_ROWS):  # Arrow tables; HF's `iter` does no worker sharding
            n = batch.num_rows
            keep = None if self.table is None else self.table[np.arange(start, start + n) % BLOCK] == self.part
            if keep is not None and not keep.any():
                start += n
                continue
            raw = _target_values(batch.column(self.target), self.target, self.where, start)
            start += n
            if keep is not None:
                batch, raw = batch.filter(keep), raw[keep]
            yield from _samples(batch, self.targets.encode(raw, self.where), self.columns, self.norm, self.where)


# -- targets ----------------------------------------------------------------------------------------
def _target_values(column: Any, name: str, where: str, first_row: int = 0) -> np.ndarray:
    """A target column of B rows as numpy (B,) or (B, k); a missing value is a DataError naming
    its row (`first_row`: the row number of the column's first value)."""
    arr = _array(column)
    if arr.null_count:
        row = first_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where}: row {row} has no value in the target column '{name}'; drop those rows (ds.filter) or fill them")
    return _values(arr, name, where)


@dataclass(frozen=True)
class Targets:
    """What the target column is: the task, classes (`names` from a ClassLabel or the sorted string
    labels; `codes` True when raw strings are encoded through them) and the target scaling."""

    task: str
    num_classes: int | None = None
    names: list[str] | None = None
    codes: bool = False
    y_norm: Standardizer | None = None

    def ids(self, raw: Any, where: str = "targets") -> np.ndarray:
        """Raw target values as numbers: string labels -> class ids through `names` (a label not
        among them is a DataError); other values as they are."""
        raw = np.asarray(raw)
        if not self.codes:
            return raw.astype(np.int64) if raw.dtype == bool else raw
        labels = raw.astype(str)
        ids = np.minimum(np.searchsorted(self.names, labels), len(self.names) - 1)
        unknown = np.asarray(self.names)[ids] != labels
        if unknown.any():
            raise DataError(f"{where}: label '{labels[np.flatnonzero(unknown)[0]]}' is not among the {len(self.names)} classes "
                            f"read first ({', '.join(self.names[:10])}{', ...' if len(self.names) > 10 else ''}); cast the "
                            "target to a ClassLabel (ds.class_encode_column) so every class is known")
        return ids

    def tensor(self, values: np.ndarray) -> torch.Tensor:
        """Numeric targets (B,) or (B, k) -> int64 class ids (B,) (classification) or float32
        (B, 1) / (B, k) (binary, multilabel, regression scaled by `y_norm`)."""
        if self.task == "classification":
            return torch.from_numpy(np.ascontiguousarray(values.astype(np.int64).reshape(-1)))
        y = values.astype(np.float32)
        if y.ndim == 1:
            y = y[:, None]
        if self.y_norm is not None:
            y = self.y_norm.transform(y)
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def encode(self, raw: Any, where: str = "targets") -> torch.Tensor:
        """Raw target values of a batch -> the target tensor (`ids`, then `tensor`)."""
        return self.tensor(self.ids(raw, where))


def _infer_targets(raw: np.ndarray, feature: Any, cfg: Any, where: str) -> tuple[Targets, np.ndarray]:
    """The Targets of a target column (values `raw`, feature `feature`) and its values as numbers
    (class ids for string labels). `data.task` / `data.num_classes` override what is inferred."""
    datasets = _datasets()
    column = f"{where} column '{cfg.target}'"
    names, codes = None, False
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
    elif raw.dtype == object and raw.ndim == 1 and len(raw) and isinstance(raw[0], np.ndarray):
        raise DataError(f"data.target: {column} holds lists of different lengths; a target is a number, a label or one "
                        "fixed-length list (multilabel) per row")
    elif raw.dtype == object or raw.dtype.kind in "US":
        names, codes = sorted(set(raw.astype(str).tolist())), True
    targets = Targets("auto", None, names, codes)
    values = targets.ids(raw, column)
    task = cfg.task
    if task == "auto":
        integral = np.isfinite(values).all() and (values == np.round(values)).all()
        if names is not None:
            task = "classification"
        elif values.ndim == 2 and np.isin(values, (0, 1)).all():
            task = "multilabel"
        elif values.ndim == 1 and integral and len(np.unique(values)) <= MAX_AUTO_CLASSES:
            task = "classification"
        else:
            task = "regression"
    k = None
    if task in ("classification", "binary"):
        k = cfg.num_classes or (len(names) if names else None) or (2 if task == "binary" else None)
        check_targets(values, task, k, column)
        k = k or class_count(values, column)  # not max + 1 blindly: ids like {0, 1000000} are refused
    else:
        check_targets(values, task, None, column)
    return Targets(task, k, names, codes), values


# -- statistics -------------------------------------------------------------------------------------
class _Moments:
    """Per-feature mean and variance merged over chunks (Chan, Golub and LeVeque 1979), float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray, where: str, rows: np.ndarray) -> None:
        """Merge the rows `x` (B, F) in; `rows` (B,) name them in the error for NaN or inf."""
        x = x.astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(rows[np.flatnonzero(bad.any(axis=1))[0]])
            raise DataError(f"{where}: row {row} has NaN or inf in its input columns; drop or impute it before training")
        n, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / total
        self.n = total

    def standardizer(self) -> Standardizer:
        std = np.sqrt(self.m2 / max(self.n, 1))
        std = np.where(std < 1e-12, 1.0, std)
        return Standardizer(tuple(float(v) for v in np.atleast_1d(self.mean)), tuple(float(v) for v in np.atleast_1d(std)))


def _x_norm(cfg: Any, source: HFSource, fit: Any) -> Standardizer | None:
    """The input standardization of a vector-mode source: given statistics, fitted ones
    (`fit()` -> Standardizer over the training rows) or none (token inputs, `normalize: none`)."""
    if source.tokens or cfg.normalize == "none":
        return None
    if cfg.normalize == "standard":
        return fit()
    mean, std = list(cfg.normalize.mean), list(cfg.normalize.std)
    if len(mean) not in (1, source.width):
        raise DataError(f"data.normalize: {len(mean)} means and stds for {source.width} input features; give 1 or {source.width}")
    return Standardizer(tuple(mean * (source.width // len(mean))), tuple(std * (source.width // len(std))))


def _norm_arrays(norm: Standardizer | None) -> tuple[np.ndarray, np.ndarray] | None:
    if norm is None:
        return None
    return np.asarray(norm.mean, dtype=np.float32), (1.0 / np.asarray(norm.std, dtype=np.float64)).astype(np.float32)


# -- the bundle -------------------------------------------------------------------------------------
def _options(cfg: Any) -> dict[str, Any]:
    options = dict(cfg.options)
    if getattr(cfg, "stream", False):
        options["streaming"] = True
    return options


def load_hf_dataset(cfg: Any) -> DataBundle:
    """`data: {format: hf_dataset, path, target, options}` as a DataBundle of `DatasetSplit`s.

    Map-style (default): `HFRows` over stratified train/val/test index sets (`data.split`,
    `data.split_seed`, `data.subset`, `data.classes`, `data.balance: class_weights | sampler`),
    inputs standardized with statistics of up to FIT_ROWS training rows, regression targets with
    the training targets' (`data.normalize_targets`). Streaming (`options.streaming` or
    `data.stream`): `HFStream` splits dealt by position (see `HFStream`); each split's `y` is the
    labels of its rows among the first PEEK_ROWS (a sample, for the output bias and class weights).
    DataError (one line) on bad input: see `read_hf_dataset`."""
    options = _options(cfg)
    source = read_hf_dataset(cfg.path, cfg.target, **options)
    if source.streaming:
        return _stream_bundle(cfg, source)
    ds, where = source.dataset, source.where
    raw = _target_values(ds.with_format("arrow", columns=[cfg.target])[:].column(cfg.target), cfg.target, where)
    targets, values = _infer_targets(raw, source.features[cfg.target], cfg, where)
    rows = np.arange(len(ds))
    names = targets.names
    if cfg.classes is not None:
        rows, values, names = _keep_classes(cfg.classes, targets, rows, values, where)
        targets = Targets(targets.task, len(cfg.classes), names, targets.codes)
    if cfg.subset is not None and cfg.subset < len(rows):
        keep = np.sort(np.random.default_rng(cfg.split_seed).permutation(len(rows))[: cfg.subset])
        rows, values = rows[keep], values[keep]
    n = len(rows)
    fr = cfg.split or default_fractions(n)
    if cfg.split_order == "ordered":
        a, b = round(fr[0] * n), round((fr[0] + fr[1]) * n)
        tr, va, te = np.arange(a), np.arange(a, b), np.arange(b, n)
    else:
        labels = values if targets.task in ("classification", "binary") and cfg.stratify else None
        tr, va, te = split_indices(n, fr, labels, cfg.split_seed)
    for name, idx in (("train", tr), ("validation", va), ("test", te)):
        if len(idx) == 0 and (name != "test" or fr[2] > 0):
            raise DataError(f"{where}: the {name} split is empty ({n} rows, data.split {list(fr)}); add rows or change data.split")
    if targets.task in ("classification", "binary"):
        check_classes(values, f"{where} column '{cfg.target}'", names)
    if targets.task == "regression" and cfg.normalize_targets:
        y_train = values[tr].astype(np.float64)
        targets = Targets(targets.task, None, None, False, Standardizer.fit(y_train[:, None] if y_train.ndim == 1 else y_train))
    y = targets.tensor(values)

    def fit() -> Standardizer:
        fit_rows = tr if len(tr) <= FIT_ROWS else np.sort(np.random.default_rng(cfg.split_seed).choice(tr, FIT_ROWS, replace=False))
        table = ds.with_format("arrow", columns=[c.name for c in source.columns])
        moments = _Moments()
        for s in range(0, len(fit_rows), READ_ROWS):
            chunk = rows[fit_rows[s : s + READ_ROWS]]
            moments.add(_inputs(table[chunk.tolist()], source.columns, where), where, chunk)
        return moments.standardizer()

    x_norm = _x_norm(cfg, source, fit)
    norm = _norm_arrays(x_norm)
    split = {k: DatasetSplit(HFRows(source, rows[idx], y[torch.from_numpy(idx)], norm), y[torch.from_numpy(idx)])
             for k, idx in (("train", tr), ("val", va), ("test", te))}
    sample_weights, class_weights = _balance(cfg, split["train"].y, targets)
    info = _info(source, targets, names, x_norm, y.shape[1] if y.ndim == 2 else 1, {k: len(v) for k, v in split.items()}, fr)
    return DataBundle(split["train"], split["val"], split["test"], info, sample_weights, class_weights)


def _keep_classes(classes: list[int], targets: Targets, rows: np.ndarray, values: np.ndarray, where: str):
    """data.classes: the rows of those class ids only, relabelled 0..k-1 in the order given."""
    k = targets.num_classes
    if targets.task != "classification":
        raise DataError(f"data.classes selects classes of a classification data set; {where} is a {targets.task} task")
    wanted = list(classes)
    if any(not 0 <= c < k for c in wanted) or len(set(wanted)) != len(wanted) or len(wanted) < 2:
        raise DataError(f"data.classes must list at least 2 distinct class ids in [0, {k}); got {wanted}")
    remap = np.full(k, -1, dtype=np.int64)
    remap[wanted] = np.arange(len(wanted))
    keep = np.isin(values, wanted)
    names = [targets.names[c] for c in wanted] if targets.names else None
    return rows[keep], remap[values[keep].astype(np.int64)], names


def _balance(cfg: Any, y_train: torch.Tensor, targets: Targets) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """data.balance for Dataset splits: class weights for the loss or sampler weights (resampling
    modes need the features in memory)."""
    if cfg.balance == "none" or targets.task not in ("classification", "binary"):
        return None, None
    if cfg.balance not in ("class_weights", "sampler"):
        raise DataError(f"data.balance: {cfg.balance} resamples features held in memory; with hf_dataset use class_weights or sampler")
    done = balance(torch.empty(0), y_train, cfg.balance, targets.num_classes or 2, torch.Generator().manual_seed(cfg.split_seed))
    return done.sample_weights, done.class_weights


def _info(source: HFSource, targets: Targets, names: list[str] | None, x_norm: Standardizer | None, y_width: int,
          sizes: dict[str, int], fractions) -> DataInfo:
    """What the rest of steepest needs to know: input shape (F,) or the padded token length (T,),
    outputs (K classes, 1 for binary, else the target's width), statistics, split sizes."""
    num_outputs = targets.num_classes if targets.task == "classification" else (1 if targets.task == "binary" else y_width)
    tokens = [c for c in source.columns if c.kind == "tokens"]
    return DataInfo(source=source.where, task=targets.task, input_shape=(tokens[0].width,) if tokens else (source.width,),
                    num_outputs=int(num_outputs), num_classes=targets.num_classes, class_names=names,
                    feature_names=None if tokens else source.feature_names(), kind="text" if tokens else "tabular",
                    sizes=sizes, fractions=tuple(float(f) for f in fractions),
                    x_norm=x_norm.to_dict() if x_norm else None, y_norm=targets.y_norm.to_dict() if targets.y_norm else None)


def _stream_bundle(cfg: Any, source: HFSource) -> DataBundle:
    """Streaming splits: HFStream per split, dealt by position; task, classes and statistics from
    the features and the first PEEK_ROWS rows."""
    where = source.where
    for key in ("classes", "subset"):
        if getattr(cfg, key) is not None:
            raise DataError(f"data.{key} needs the rows indexed; with a stream, filter the data set first or drop streaming")
    if cfg.split_order == "ordered":
        raise DataError("data.split_order: ordered needs the stream's length; with a stream the splits are dealt by position")
    fr = cfg.split or default_fractions(source.length or 10**6)
    table = _part_table(fr, cfg.split_seed)
    names_in = [c.name for c in source.columns] + [cfg.target]
    peek_x, peek_y, peek_part = [], [], []
    start = 0
    head = source.dataset.select_columns(names_in).take(PEEK_ROWS).with_format("arrow")
    for batch in head.iter(batch_size=READ_ROWS):
        n = batch.num_rows
        peek_part.append(table[np.arange(start, start + n) % BLOCK])
        peek_y.append(_target_values(batch.column(cfg.target), cfg.target, where, start))
        if not source.tokens:
            peek_x.append(_inputs(batch, source.columns, where))
        start += n
    if not peek_y:
        raise DataError(f"{where}: no rows; the data set is empty")
    raw, part = np.concatenate(peek_y), np.concatenate(peek_part)
    whole = source.length if source.length is not None else len(raw) if len(raw) < PEEK_ROWS else None
    if whole is not None:  # the stream's length is known: no split that training or its metrics use may be empty
        for k, (name, size) in enumerate(zip(("train", "validation", "test"), _part_sizes(whole, table))):
            if size == 0 and (k < 2 or fr[2] > 0):
                raise DataError(f"{where}: the {name} split is empty ({whole} rows, data.split {list(fr)}); add rows or change "
                                "data.split")
    targets, values = _infer_targets(raw, source.features[cfg.target], cfg, where)
    if targets.task == "regression" and cfg.normalize_targets:
        y_train = values[part == 0].astype(np.float64) if (part == 0).any() else values.astype(np.float64)
        targets = Targets(targets.task, None, None, False, Standardizer.fit(y_train[:, None] if y_train.ndim == 1 else y_train))

    def fit() -> Standardizer:
        moments = _Moments()
        x = np.concatenate(peek_x)
        train = part == 0 if (part == 0).any() else np.ones(len(x), bool)
        moments.add(x[train], where, np.flatnonzero(train))
        return moments.standardizer()

    x_norm = _x_norm(cfg, source, fit)
    norm = _norm_arrays(x_norm)
    y_peek = targets.encode(raw, where)
    split = {}
    for k, key in enumerate(("train", "val", "test")):
        stream = HFStream(source, targets, norm, part=k, fractions=fr, seed=cfg.split_seed)
        split[key] = DatasetSplit(stream, y_peek[torch.from_numpy(np.flatnonzero(part == k))])
    sizes = {k: len(v.dataset) for k, v in split.items()} if source.length is not None else {}
    sample_weights, class_weights = (None, None)
    if cfg.balance == "class_weights":
        sample_weights, class_weights = _balance(cfg, split["train"].y, targets)
    elif cfg.balance != "none" and targets.task in ("classification", "binary"):
        raise DataError(f"data.balance: {cfg.balance} needs the rows indexed; with a stream use class_weights (from the first rows)")
    info = _info(source, targets, targets.names, x_norm, y_peek.shape[1] if y_peek.ndim == 2 else 1, sizes, fr)
    return DataBundle(split["train"], split["val"], split["test"], info, sample_weights, class_weights)
