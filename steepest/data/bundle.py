"""Load a data config into train/val/test tensors plus what the model and loss need to know."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from steepest.data._registry import DATASETS
from steepest.data.arrays import load_memmap
from steepest.data.checks import (
    check_classes,
    check_features,
    check_lengths,
    check_targets,
    class_count,
)
from steepest.data.containers import (
    DataBundle,
    DataInfo,
    DatasetSplit,
    Split,
    split_size,
    task_from_labels,
)
from steepest.data.hf import load_hf_dataset
from steepest.data.images import image_splits, read_image_csv, read_image_folder
from steepest.data.imbalance import balance
from steepest.data.normalize import Standardizer
from steepest.data.raw import RawData
from steepest.data.sources import from_dataset_object, read_csv, read_npz
from steepest.data.splits import default_fractions, split_indices
from steepest.data.stream import EpochIndexed
from steepest.data.tabular import TabularEncoder
from steepest.data.text import read_text_folder_data
from steepest.errors import DataError
from steepest.registry import import_object


def in_memory_sample(data: DataBundle, limit: int = 4096, seed: int = 0, num_workers: int = 0) -> DataBundle:
    """`data` with every Dataset split replaced by tensors of at most `limit` of its samples, read
    through the same pipeline training uses (the training split with its per-sample transform, as
    in epoch 0; a random subset, seeded, when the split is larger). What the doctor and the report
    check on streamed and image-file data. In-memory splits are returned as they are. Samples must
    be (x, y) pairs. Errors: DataError for other samples."""
    if not any(isinstance(part, DatasetSplit) for part in (data.train, data.val, data.test)):
        return data

    def take(part, train: bool) -> Split:
        if isinstance(part, Split):
            return part
        if split_size(part) == 0:  # a component without a test split: an empty one, shaped as the others
            return Split(torch.empty((0, *data.info.input_shape)), part.y[:0])
        if isinstance(part.dataset, IterableDataset):  # a stream: its first `limit` samples
            return _stack(list(itertools.islice(iter(part.dataset), limit)))
        n = len(part)
        keep = np.sort(np.random.default_rng(seed).permutation(n)[:limit]) if n > limit else np.arange(n)
        indexed = EpochIndexed(part.dataset, part.transform if train else None, seed)
        loader = DataLoader(Subset(indexed, [(0, int(i)) for i in keep]), batch_size=256, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed))
        xs, ys = [], []
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
                raise DataError("the checks that read data in memory need (x, y) samples; this Dataset gives "
                                f"{type(batch).__name__} batches")
            xs.append(batch[0])
            ys.append(torch.as_tensor(batch[1]))
        return Split(torch.cat(xs), torch.cat(ys))

    return DataBundle(take(data.train, True), take(data.val, False), take(data.test, False), data.info,
                      None, data.class_weights)


def _stack(samples: list) -> Split:
    if not samples or not all(isinstance(x, (tuple, list)) and len(x) == 2 for x in samples):
        raise DataError("the checks that read data in memory need (x, y) samples; this stream gives "
                        f"{type(samples[0]).__name__ if samples else 'nothing'}")
    return Split(torch.stack([torch.as_tensor(x) for x, _ in samples]), torch.stack([torch.as_tensor(y) for _, y in samples]))


def read_source(cfg) -> tuple[str, RawData]:
    if cfg.component is not None:
        return cfg.component, from_dataset_object(cfg.component, cfg.options)
    if cfg.format == "csv":
        return str(cfg.path), read_csv(cfg.path, cfg.target, **cfg.options)
    if cfg.format == "npz":
        return str(cfg.path), read_npz(cfg.path, **cfg.options)
    if cfg.format == "text_folder":
        return str(cfg.path), read_text_folder_data(cfg.path, **cfg.options)
    record = DATASETS.get(cfg.name, "data.name")
    return cfg.name, record.target(**{**record.defaults, **cfg.options, "data_dir": cfg.data_dir})


def infer_task(raw: RawData, declared: str) -> str:
    """The task: declared, the source's own, or read from the labels (`task_from_labels`)."""
    if declared != "auto":
        return declared
    if raw.task != "auto":
        return raw.task
    return task_from_labels(np.asarray(raw.y))


def _class_id_column(y: np.ndarray | None, task: str) -> np.ndarray | None:
    """Class ids given as a column (N, 1) read as (N,): whole numbers when the task is
    classification or binary, integers (or booleans) when it is read from the labels."""
    if y is None or y.ndim != 2 or y.shape[1] != 1:
        return y
    if task in ("classification", "binary") or (task == "auto" and (np.issubdtype(y.dtype, np.integer) or y.dtype == bool)):
        return y.reshape(-1)
    return y


def text_labels(raw: RawData, declared: str, source: str) -> RawData:
    """`raw` with targets given as text (an .npz of strings, a Dataset returning 'cat') turned into
    class ids, the sorted distinct labels as class names (as `read_csv` does); numeric targets are
    returned as they are. DataError for text targets of a numeric task, empty labels, or more than
    one text label per sample."""
    given = [np.asarray(raw.y)] + ([] if raw.y_test is None else [np.asarray(raw.y_test)])
    ys = [np.asarray(y.tolist()) if y.dtype.kind == "O" else y for y in given]  # a pandas column of str or numbers: its own dtype
    if any(y.dtype.kind == "O" for y in ys):
        raise DataError(f"{source} targets: Python objects of mixed kinds (dtype object); give numbers, or text labels")
    if not any(y.dtype.kind in "US" for y in ys):
        return replace(raw, y=ys[0], y_test=ys[1] if len(ys) > 1 else None) if any(y.dtype.kind == "O" for y in given) else raw
    ys = [y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y for y in ys]
    if any(y.ndim != 1 for y in ys):
        raise DataError(f"{source} targets: text labels of shape {ys[0].shape}; give one label per sample, shape (n,)")
    ys = [np.char.strip(y.astype(str)) for y in ys]
    for name, y in zip(("labels", "test labels"), ys):
        empty = np.flatnonzero(y == "")
        if len(empty):
            raise DataError(f"{source} {name}: row {int(empty[0])} has an empty label; drop that row or fill in its label")
    names = sorted(set(np.concatenate(ys).tolist()))
    task = declared if declared != "auto" else raw.task
    if task not in ("auto", "classification", "binary"):
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        raise DataError(f"{source} targets: text labels ({shown}) cannot be {task} targets; give numbers, or set "
                        "data.task: classification")
    lookup = {n: i for i, n in enumerate(names)}
    ids = [np.asarray([lookup[v] for v in y.tolist()], np.int64) for y in ys]
    return replace(raw, y=ids[0], y_test=ids[1] if len(ids) > 1 else None, task="classification" if raw.task == "auto" else raw.task,
                   class_names=names, num_classes=len(names))


def check_binary(task: str, num_classes: int | None, source: str, names: list[str] | None = None, declared: int | None = None) -> None:
    """`task: binary` holds exactly 2 classes (one output, a sigmoid): more is a DataError naming them."""
    if task != "binary" or num_classes is None or num_classes == 2:
        return
    if declared is not None:
        raise DataError(f"data.num_classes is {declared} but task binary has 2 classes; set data.task: classification for "
                        f"{declared} classes, or drop data.num_classes")
    shown = f" ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})" if names else ""
    raise DataError(f"{source}: task binary needs 2 classes, found {num_classes}{shown}; set data.task: classification "
                    "(or leave it out) to train them as classes")


def _count(n: int) -> str:
    return f"{n} mean{'s' if n != 1 else ''} and std{'s' if n != 1 else ''}"


def given_statistics(normalize: Any, x: np.ndarray, kind: str, source: str, encoder: TabularEncoder | None = None) -> Standardizer:
    """The Standardizer of `data.normalize: {mean, std}` for in-memory inputs `x` (N, ...): one value
    per feature (per channel for images (N, C, H, W); per numeric value column of a CSV with
    categorical or imputed columns, whose other columns stay as they are). DataError for another count."""
    mean, std = [float(v) for v in normalize.mean], [float(v) for v in normalize.std]
    per_channel = kind == "image" and x.ndim >= 3
    if encoder is not None:
        scaled = np.asarray(encoder.scaled, bool)
        names = [n for n, k in zip(encoder.feature_names, scaled) if k]
        if len(mean) != len(names):
            raise DataError(f"data.normalize: {_count(len(mean))} for the {len(names)} numeric columns of {source} "
                            f"({', '.join(names) or 'none'}); give one per numeric column, or use normalize: standard")
        full_mean, full_std = np.zeros(len(scaled)), np.ones(len(scaled))
        full_mean[scaled], full_std[scaled] = mean, std
        return Standardizer(tuple(float(v) for v in full_mean), tuple(float(v) for v in full_std))
    width = int(x.shape[1]) if per_channel else int(np.prod(x.shape[1:], dtype=np.int64))
    if len(mean) != width:
        what = "channel" if per_channel else "feature"
        raise DataError(f"data.normalize: {_count(len(mean))} for {source} inputs of shape {tuple(x.shape[1:])}; give "
                        f"{width}, one per {what}{' column' if what == 'feature' and x.ndim == 2 else ''}, or use normalize: standard")
    return Standardizer(tuple(mean), tuple(std), per_channel)


def _targets_array(y: np.ndarray, task: str) -> np.ndarray:
    if task == "classification":
        return y.astype(np.int64)
    y = y.astype(np.float32)
    return y[:, None] if (task in ("regression", "binary") and y.ndim == 1) else y


def _select_classes(classes, task, num_classes, x, y, x_test, y_test, names, source):
    """Keep the samples of `classes` only, relabelled 0..k-1 in the order given (data.classes)."""
    if task != "classification":
        raise DataError(f"data.classes selects classes of a classification data set; {source} is a {task} task")
    wanted = list(classes)
    bad = [c for c in wanted if not 0 <= c < num_classes]
    if bad or len(set(wanted)) != len(wanted) or len(wanted) < 2:
        raise DataError(f"data.classes must list at least 2 distinct class ids in [0, {num_classes}); got {wanted}")
    remap = np.full(num_classes, -1, dtype=np.int64)
    remap[wanted] = np.arange(len(wanted))

    def pick(xs, ys):
        keep = np.isin(ys, wanted)
        return xs[keep], remap[ys[keep].astype(np.int64)]

    x, y = pick(x, y)
    if x_test is not None:
        x_test, y_test = pick(x_test, y_test)
    return x, y, x_test, y_test, ([names[c] for c in wanted] if names else names)


_SPLITS = {"train": "training", "val": "validation", "test": "test"}


def _split_sizes(n: int, fractions, ordered: bool) -> tuple[int, int, int]:
    """(train, val, test) sample counts that prepare's split of n samples with `fractions` gives."""
    if ordered:
        a, b = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
        return a, b - a, n - b
    test = round(fractions[2] * n) if fractions[2] > 0 else 0
    val = round(fractions[1] / max(fractions[0] + fractions[1], 1e-12) * (n - test)) if fractions[1] > 0 else 0
    return n - test - val, val, test


def _check_split_sizes(parts: dict, n: int, fr, split_fr, ordered: bool, source: str) -> None:
    """Every split that training or its metrics use holds a sample: train and val always, the test
    split unless `data.split` gives it no share. The error says how many samples are needed.

    `fr` is data.split (or the default), `split_fr` the fractions the n samples were split with."""
    needed = [k for i, k in enumerate(_SPLITS) if k != "test" or split_fr[i] > 0]
    empty = [k for k in needed if len(parts[k][0]) == 0]
    if not empty:
        return
    shares = "/".join(f"{f:g}" for f in fr)
    for i, k in enumerate(_SPLITS):
        if k in empty and split_fr[i] == 0:
            raise DataError(f"data.split ({shares}) gives the {_SPLITS[k]} split no share; training and its metrics need a "
                            "sample there: give it a positive fraction")
    least = next(m for m in itertools.count(n + 1) if all(s > 0 for s, k in zip(_split_sizes(m, split_fr, ordered), _SPLITS) if k in needed))
    raise DataError(f"{source}: {n} sample{'s are' if n != 1 else ' is'} too few: the {' and '.join(_SPLITS[k] for k in empty)} "
                    f"split{'s' if len(empty) > 1 else ''} would be empty (data.split {shares}); training and its metrics need a "
                    f"sample in each: give at least {least} samples or change data.split")


def load_data(cfg, seed: int = 0) -> DataBundle:
    """Read, check, split (stratified, seeded), normalize (fitted on train) and tensorize; image
    files become Dataset splits read sample by sample (see `load_images`)."""
    if cfg.format in ("image_folder", "image_csv"):
        return load_images(cfg)
    if cfg.format == "memmap":  # .npy arrays memory-mapped from disk, read a micro-batch at a time (steepest.data.arrays)
        return load_memmap(cfg)
    if cfg.format == "hf_dataset":  # Hugging Face datasets (the optional extra is imported inside steepest.data.hf)
        return load_hf_dataset(cfg)
    if cfg.component is not None and getattr(cfg, "stream", False):
        return load_dataset_component(cfg)
    source, raw = read_source(cfg)
    return prepare(raw, cfg, source)


def load_images(cfg) -> DataBundle:
    """Image files (a folder per class, or a CSV of paths and labels) as Dataset splits: stratified
    index sets (data.split, data.split_seed), the training split with its random per-sample
    transforms, normalized with given or fitted statistics (steepest.data.images)."""
    if cfg.format == "image_folder":
        files, labels, classes = read_image_folder(cfg.path, **cfg.options)
    else:
        files, labels, classes = read_image_csv(cfg.path, cfg.target, **cfg.options)
    y = np.asarray(labels)
    if cfg.subset is not None and cfg.subset < len(files):
        keep = np.sort(np.random.default_rng(cfg.split_seed).permutation(len(files))[: cfg.subset])
        files, y = [files[i] for i in keep], y[keep]
    fr = cfg.split or default_fractions(len(files))
    tr, va, te = split_indices(len(files), fr, y if cfg.stratify else None, cfg.split_seed)
    for name, idx in (("train", tr), ("validation", va), ("test", te)):
        if len(idx) == 0:
            raise DataError(f"{cfg.path}: the {name} split is empty ({len(files)} images, data.split {list(fr)}); add images or change data.split")
    normalize = cfg.normalize.model_dump() if hasattr(cfg.normalize, "model_dump") else cfg.normalize
    parts = image_splits(files, y.tolist(), {"train": tr, "val": va, "test": te}, cfg.channels, cfg.image_size, cfg.transforms, normalize)
    k = len(classes)
    info = DataInfo(source=str(cfg.path), task="classification", input_shape=(cfg.channels, cfg.image_size, cfg.image_size),
                    num_outputs=k, num_classes=k, class_names=classes, kind="image",
                    sizes={"train": len(tr), "val": len(va), "test": len(te)}, fractions=tuple(float(f) for f in fr),
                    images={"image_size": cfg.image_size, "channels": cfg.channels, "mean": parts.mean, "std": parts.std})
    label = lambda idx: torch.from_numpy(y[idx].astype(np.int64))  # noqa: E731
    train = DatasetSplit(parts.train, label(tr), parts.train_transform)
    return DataBundle(train, DatasetSplit(parts.val, label(va)), DatasetSplit(parts.test, label(te)), info)


def _labels_of(dataset: Dataset, source: str) -> np.ndarray:
    """A Dataset's labels (N,): its `targets` or `labels` attribute (torchvision's and many others'
    convention), else read sample by sample (inputs dropped as they are read: memory stays bounded)."""
    for name in ("targets", "labels"):
        found = getattr(dataset, name, None)
        if found is not None and not callable(found) and len(found) == len(dataset):
            return _numeric_labels(np.asarray(found.cpu() if isinstance(found, torch.Tensor) else found), source)
    out = []
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except Exception as exc:  # a user's code: report it in one line
            raise DataError(f"data.component: '{source}' failed at sample {i} ({type(exc).__name__}: {exc})") from None
        target = sample.get("labels") if isinstance(sample, dict) else sample[-1] if isinstance(sample, (tuple, list)) and len(sample) >= 2 else None
        if target is None:
            raise DataError(f"data.component: sample {i} of '{source}' is a {type(sample).__name__}; return (x, y) pairs or dicts with 'labels'")
        out.append(np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target))
    return _numeric_labels(np.stack(out), source) if out else np.zeros(0)


def _numeric_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Labels of a Dataset read sample by sample: numbers (text cannot be batched into a tensor)."""
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        first = y.reshape(-1)[0].item() if y.size else None
        what = "text" if y.dtype.kind in "US" else f"dtype {y.dtype}"
        raise DataError(f"data.component: the labels of '{source}' are {what} ({first!r}, ...); a Dataset read with data.stream: true must return class ids 0..K-1 or numbers: map them "
                        "in the Dataset (without stream: true, text labels become classes as in a CSV)")
    return y


def load_dataset_component(cfg) -> DataBundle:
    """`data: {component: pkg.mod:make_dataset, stream: true}`: the user's map-style Dataset read
    sample by sample through torch's DataLoader, never materialized. The factory returns one Dataset
    (split into train/val/test index sets, stratified by its labels) or a dict with "train", "val"
    and optionally "test" Datasets (used as they are; without "test" there is no test split). Labels
    come from a `targets`/`labels` attribute when the Dataset has one, else from one pass that
    keeps only the labels. Inputs are not standardized (normalize in the Dataset); batches are
    checked row by row as they are read (`steepest.data.checks.batch_checker`)."""
    factory = import_object(cfg.component, "data.component")
    made = factory(**cfg.options) if callable(factory) and not isinstance(factory, Dataset) else factory
    parts = made if isinstance(made, dict) else {"all": made}
    for part in parts.values():
        if isinstance(part, IterableDataset):
            continue
        if not isinstance(part, Dataset) and not (hasattr(part, "__len__") and hasattr(part, "__getitem__")):
            raise DataError(f"data.component: '{cfg.component}' gave a {type(part).__name__}; return a torch Dataset or a dict of them")
    if any(isinstance(part, IterableDataset) for part in parts.values()):
        return _stream_component(cfg, parts)
    if "all" in parts:
        dataset = parts["all"]
        y = _labels_of(dataset, cfg.component)
        if len(y) == 0:
            raise DataError(f"data.component: '{cfg.component}' is empty")
        task = infer_task(RawData(x=np.zeros((len(y), 1)), y=y), cfg.task)
        fr = cfg.split or default_fractions(len(y))
        labels = y if task in ("classification", "binary") and cfg.stratify else None
        tr, va, te = split_indices(len(y), fr, labels, cfg.split_seed)
        splits = {"train": (Subset(dataset, tr.tolist()), y[tr]), "val": (Subset(dataset, va.tolist()), y[va]),
                  "test": (Subset(dataset, te.tolist()), y[te])}
    else:
        missing = {"train", "val"} - set(parts)
        if missing:
            raise DataError(f"data.component: the dict from '{cfg.component}' needs 'train' and 'val' Datasets (missing {', '.join(sorted(missing))})")
        parts = {**parts, "test": parts.get("test", Subset(parts["val"], []))}  # no test given: none (not the val split again)
        splits = {k: (parts[k], _labels_of(parts[k], cfg.component)) for k in ("train", "val", "test")}
        task = infer_task(RawData(x=np.zeros((len(splits["train"][1]), 1)), y=splits["train"][1]), cfg.task)
    all_y = np.concatenate([v[1] for v in splits.values()])
    num_classes = None
    if task in ("classification", "binary"):
        num_classes = cfg.num_classes or (2 if task == "binary" else None)
        check_targets(all_y, task, num_classes, f"{cfg.component} labels")
        num_classes = num_classes or class_count(all_y, f"{cfg.component} labels", inferred=cfg.task == "auto")
    first = splits["train"][0][0]
    x0 = first[0] if isinstance(first, (tuple, list)) else None
    input_shape = tuple(np.shape(np.asarray(x0))) if x0 is not None else ()
    y_train = splits["train"][1]
    num_outputs = num_classes if task == "classification" else 1 if task == "binary" or y_train.ndim == 1 else int(y_train.shape[1])
    info = DataInfo(source=cfg.component, task=task, input_shape=input_shape, num_outputs=int(num_outputs), num_classes=num_classes,
                    kind="image" if len(input_shape) == 3 else "tabular", sizes={k: len(v[1]) for k, v in splits.items()})
    as_tensor = lambda ys: torch.from_numpy(_targets_array(ys, task))  # noqa: E731
    return DataBundle(*(DatasetSplit(splits[k][0], as_tensor(splits[k][1])) for k in ("train", "val", "test")), info)


PEEK_SAMPLES = 10_000  # samples read first from a stream to infer its task, classes and input shape


def _peek_labels(stream: IterableDataset, source: str, name: str) -> tuple[np.ndarray, Any]:
    """The labels of a stream's first PEEK_SAMPLES samples (read in this process) and its first input."""
    out, first = [], None
    for i, sample in enumerate(stream):
        if i == PEEK_SAMPLES:
            break
        x, target = (sample[0], sample[1]) if isinstance(sample, (tuple, list)) and len(sample) >= 2 else (None, None)
        if isinstance(sample, dict):
            target = sample.get("labels")
        if target is None:
            raise DataError(f"data.component: sample {i} of the {name} stream of '{source}' is a {type(sample).__name__}; "
                            "yield (x, y) pairs or dicts with 'labels'")
        first = x if first is None else first
        out.append(np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target))
    if not out:
        raise DataError(f"data.component: the {name} stream of '{source}' is empty")
    return _numeric_labels(np.stack(out), source), first


def _stream_component(cfg, parts: dict[str, Any]) -> DataBundle:
    """`data.component` giving IterableDatasets (streams, read in order and never indexed): a dict
    with "train" and "val" (and optionally "test"; without it the run has no test split and reports
    its validation metrics), each a stream or a
    map-style Dataset. Task, classes and input shape come from the first PEEK_SAMPLES training
    samples (declare `data.num_classes` when later samples hold classes the first ones lack; a label
    out of range stops the run naming its sample). Streams know no length unless they define
    `__len__`: then give `trainer.max_steps`."""
    source = cfg.component
    if "all" in parts:
        raise DataError(f"data.component: '{source}' gave one IterableDataset; a stream cannot be split by index: return "
                        "{'train': ..., 'val': ..., 'test': ...} (the test split is optional)")
    missing = {"train", "val"} - set(parts)
    if missing:
        raise DataError(f"data.component: the dict from '{source}' needs 'train' and 'val' (missing {', '.join(sorted(missing))})")
    for key in ("classes", "subset"):
        if getattr(cfg, key, None) is not None:
            raise DataError(f"data.{key} needs the samples indexed; with a stream, filter it in the component")
    if cfg.balance not in ("none", "class_weights"):
        raise DataError(f"data.balance: {cfg.balance} needs the samples indexed; with a stream use class_weights (from the first samples)")
    labels, firsts = {}, {}
    parts = {**parts, "test": parts.get("test", Subset(parts["val"], []))}  # no test given: none (not the val stream again)
    for key in ("train", "val", "test"):
        part = parts[key]
        if key == "test" and isinstance(part, Subset) and not part.indices:
            labels[key], firsts[key] = labels["val"][:0], None
        elif isinstance(part, IterableDataset):
            labels[key], firsts[key] = _peek_labels(part, source, key)
        else:
            labels[key], firsts[key] = _labels_of(part, source), None
    y_train = labels["train"]
    task = infer_task(RawData(x=np.zeros((len(y_train), 1)), y=y_train), cfg.task)
    num_classes = None
    if task in ("classification", "binary"):
        num_classes = cfg.num_classes or (2 if task == "binary" else None)
        check_targets(np.concatenate(list(labels.values())), task, num_classes, f"{source} labels")
        num_classes = num_classes or class_count(np.concatenate(list(labels.values())), f"{source} labels", inferred=cfg.task == "auto")
    x0 = firsts["train"]
    input_shape = tuple(np.shape(np.asarray(x0))) if x0 is not None else ()
    num_outputs = num_classes if task == "classification" else 1 if task == "binary" or y_train.ndim == 1 else int(y_train.shape[1])
    splits = {k: DatasetSplit(parts[k], torch.from_numpy(_targets_array(labels[k], task))) for k in ("train", "val", "test")}
    sizes = {k: size for k, v in splits.items() if (size := split_size(v)) is not None}
    class_weights = None
    if cfg.balance == "class_weights" and task in ("classification", "binary"):
        class_weights = balance(torch.empty(0), splits["train"].y, "class_weights", num_classes or 2,
                                torch.Generator().manual_seed(cfg.split_seed)).class_weights
    info = DataInfo(source=source, task=task, input_shape=input_shape, num_outputs=int(num_outputs), num_classes=num_classes,
                    kind="image" if len(input_shape) == 3 else "tabular", sizes=sizes)
    return DataBundle(splits["train"], splits["val"], splits["test"], info, None, class_weights)


def prepare(raw: RawData, cfg, source: str = "arrays") -> DataBundle:
    """Check, split, normalize and tensorize data already in memory (what load_data does after reading).

    Tabular rows with categorical or missing cells (`raw.meta["tabular"]`, from `read_csv`) are
    encoded after the split by a `TabularEncoder` fitted on the training rows only (categories,
    medians, indicator columns; steepest.data.tabular), and standardization then scales the
    numeric value columns only; the encoder is saved as `DataInfo.tabular`."""
    raw = text_labels(raw, cfg.task, source)
    declared = cfg.task if cfg.task != "auto" else raw.task
    y = _class_id_column(np.asarray(raw.y), declared)
    y_test = None if raw.y_test is None else _class_id_column(np.asarray(raw.y_test), declared)
    if y_test is not None and y.ndim != y_test.ndim:  # one of them a column of floats: leave both as given
        y, y_test = np.asarray(raw.y), np.asarray(raw.y_test)
    raw = replace(raw, y=y, y_test=y_test)
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    spec = raw.meta.get("tabular")
    check_lengths(x, y, source)
    x_test, y_test = (None, None) if raw.x_test is None else (np.asarray(raw.x_test), np.asarray(raw.y_test))
    if x_test is not None:
        check_lengths(x_test, y_test, f"{source} test split", ("x_test", "y_test"))
        if x_test.shape[1:] != x.shape[1:] or y_test.shape[1:] != y.shape[1:]:
            raise DataError(f"{source}: test samples have shape {x_test.shape[1:]} and targets {y_test.shape[1:]}, training ones "
                            f"{x.shape[1:]} and {y.shape[1:]}; the official test split must match the training data")
    all_y = y if y_test is None else np.concatenate([y, y_test])
    task = infer_task(raw, cfg.task)
    num_classes = None
    if task in ("classification", "binary"):
        num_classes = cfg.num_classes or raw.num_classes or (2 if task == "binary" else None)
        check_binary(task, num_classes, source, raw.class_names, cfg.num_classes)
        check_targets(all_y, task, num_classes, f"{source} labels")
        num_classes = num_classes or class_count(all_y, f"{source} labels", inferred=cfg.task == "auto" and raw.task == "auto")
    else:
        check_targets(all_y, task, None, f"{source} targets")
    if spec is None:  # a tabular table's cells were checked by its reader; numbers are checked after encoding
        check_features(x, f"{source} features")
    if x.ndim == 1:
        x = x[:, None]
    class_names = raw.class_names
    if getattr(cfg, "classes", None) is not None:
        x, y, x_test, y_test, class_names = _select_classes(cfg.classes, task, num_classes, x, y, x_test, y_test, class_names, source)
        num_classes = len(cfg.classes)

    labels = y if task in ("classification", "binary") and cfg.stratify else None
    if x_test is not None:
        if spec is None:
            check_features(x_test, f"{source} test features")
        n_total = len(x) + len(x_test)
        fr = cfg.split or default_fractions(n_total)
        val_share = fr[1] / max(fr[0] + fr[1], 1e-12)
        split_fr = (1 - val_share, val_share, 0.0)  # of x: the test split is the official one
        tr, va, _ = split_indices(len(x), split_fr, labels, cfg.split_seed)
        parts = {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x_test, y_test)}
    else:
        fr = split_fr = cfg.split or default_fractions(len(x))
        if cfg.split_order == "ordered":  # the held-out stretches come after the training one
            a, b = int(round(fr[0] * len(x))), int(round((fr[0] + fr[1]) * len(x)))
            tr, va, te = np.arange(a), np.arange(a, b), np.arange(b, len(x))
        else:
            tr, va, te = split_indices(len(x), fr, labels, cfg.split_seed)
        parts = {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x[te], y[te])}
    _check_split_sizes(parts, len(x), fr, split_fr, cfg.split_order == "ordered" and x_test is None, source)
    if task in ("classification", "binary"):
        check_classes(y if y_test is None else np.concatenate([y, y_test]), f"{source} labels", class_names)
    if cfg.subset is not None and cfg.subset < len(parts["train"][0]):
        keep = np.sort(np.random.default_rng(cfg.split_seed).permutation(len(parts["train"][0]))[: cfg.subset])
        parts["train"] = (parts["train"][0][keep], parts["train"][1][keep])

    encoder = None
    if spec is not None:  # categories and medians from the training rows only, then every split encoded
        features = raw.feature_names or [f"x{j}" for j in range(x.shape[1])]
        encoder = TabularEncoder.fit(parts["train"][0], features, spec.get("categorical", ()), spec.get("encoding", "onehot"),
                                     spec.get("fill_missing", False), f"{source} training rows")
        parts = {k: (encoder.transform(v[0], f"{source} {_SPLITS[k]} rows"), v[1]) for k, v in parts.items()}
        for k, v in parts.items():
            check_features(v[0], f"{source} {_SPLITS[k]} rows (encoded)")
        x = parts["train"][0]

    per_channel = raw.kind == "image"
    standardize = cfg.normalize == "standard" and raw.kind != "text"  # token ids are never scaled
    x_norm = None
    if standardize:
        x_norm = encoder.fit_standardizer(parts["train"][0]) if encoder else Standardizer.fit(parts["train"][0], per_channel)
    elif hasattr(cfg.normalize, "mean") and raw.kind != "text":  # given statistics (a pretrained model's, or the data's own)
        x_norm = given_statistics(cfg.normalize, parts["train"][0], raw.kind, source, encoder)
    y_norm = None
    if task == "regression" and cfg.normalize_targets:
        y_norm = Standardizer.fit(_targets_array(parts["train"][1], task))

    def tensors(xs: np.ndarray, ys: np.ndarray) -> Split:
        xs = x_norm.transform(xs) if x_norm else xs.astype(np.float32)
        ys = _targets_array(ys, task)
        if y_norm is not None:
            ys = y_norm.transform(ys)
        return Split(torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)), torch.from_numpy(np.ascontiguousarray(ys)))

    splits = {k: tensors(*v) for k, v in parts.items()}
    balanced = None
    if cfg.balance != "none" and task in ("classification", "binary"):  # after the split: the training split only
        train = splits["train"]
        balanced = balance(train.x, train.y, cfg.balance, num_classes or 2, torch.Generator().manual_seed(cfg.split_seed))
        splits["train"] = Split(balanced.x, balanced.y)
    y_train = splits["train"].y
    num_outputs = num_classes if task == "classification" else (1 if task == "binary" else int(y_train.shape[1]))
    info = DataInfo(
        source=source,
        task=task,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        num_outputs=int(num_outputs),
        num_classes=num_classes,
        class_names=class_names,
        feature_names=encoder.feature_names if encoder else raw.feature_names,
        kind=raw.kind,
        sizes={k: len(v) for k, v in splits.items()},
        fractions=tuple(float(f) for f in fr),
        x_norm=x_norm.to_dict() if x_norm else None,
        y_norm=y_norm.to_dict() if y_norm else None,
        text=raw.meta.get("text"),
        tabular=encoder.to_dict() if encoder else None,
    )
    return DataBundle(splits["train"], splits["val"], splits["test"], info,
                      sample_weights=balanced.sample_weights if balanced else None,
                      class_weights=balanced.class_weights if balanced else None)
