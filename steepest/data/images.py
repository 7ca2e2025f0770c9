"""Image data read from files, sample by sample (decoded with Pillow in the DataLoader workers):

    data: {format: image_folder, path: photos/, image_size: 64, num_workers: 2,
           transforms: {random_resized_crop: {scale: [0.5, 1]}, hflip: 0.5, color_jitter: {...}}}
    data: {format: image_csv, path: labels.csv, target: label, options: {path_column: file}}

An image folder holds one sub-folder per class (sorted names are the classes); a CSV names an
image file (relative to the CSV's folder) and a label per row. The splits are stratified index
sets over the files; the training split runs the random `transforms` (seeded per sample, see
`steepest.data.transforms`), validation and test the deterministic resize + centre crop. Inputs
are normalized with `normalize: {mean: [...], std: [...]}` (a pretrained model's statistics) or,
with `normalize: standard`, per-channel statistics fitted on up to `FIT_SAMPLES` training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from steepest.data.sources import csv_header, csv_rows
from steepest.data.transforms import Compose, Normalize, from_config, load_image
from steepest.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FIT_SAMPLES = 512


class ImageFiles(Dataset):
    """(image tensor (C, H, W) in [0, 1], class id) for each (path, label) pair; `transform(x)`
    (deterministic) is applied when given."""

    def __init__(self, files: list[Path], labels: list[int], channels: int = 3, transform=None):
        self.files, self.labels, self.channels, self.transform = files, labels, channels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_image(self.files[i], self.channels)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.tensor(self.labels[i])


def read_image_folder(path: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Files, class ids and class names of a folder with one sub-folder of images per class."""
    root = Path(path)
    if root.is_file():
        raise DataError(f"data.path: '{root}' is a file; format image_folder reads a folder with one sub-folder of images per "
                        "class (a CSV of image paths and labels is format: image_csv)")
    if not root.is_dir():
        raise DataError(f"data.path: image folder '{root}' does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for k, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        files += found
        labels += [k] * len(found)
    if len(classes) < 2 or not files:
        raise DataError(f"{root}: an image folder needs one sub-folder of images per class, at least 2 classes "
                        f"(found {len(classes)} folders, {len(files)} images)")
    found = set(labels)
    empty = [name for k, name in enumerate(classes) if k not in found]
    if empty:  # a class with no example would be an output the model never learns, and stratified splits cannot place it
        more = f" (and {len(empty) - 1} more: {', '.join(empty[1:4])}{', ...' if len(empty) > 4 else ''})" if len(empty) > 1 else ""
        raise DataError(f"{root}: class folder '{empty[0]}'{more} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        "add images to it or remove the folder")
    return files, labels, classes


def read_image_csv(path: str | Path, target: str, path_column: str = "path") -> tuple[list[Path], list[int], list[str]]:
    """Files (relative to the CSV's folder), class ids and class names (sorted label values) of a
    CSV with a file column and a label column. The text is read as the csv format reads it
    (UTF-8, or a byte-order mark; other encodings are a DataError with the `iconv` command), cells
    are stripped of spaces, and a row with a missing or empty path or label, a ragged row, a missing
    file or fewer than 2 classes is a one-line DataError naming the row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.path: CSV file '{path}' {'is a folder' if path.is_dir() else 'does not exist'}; format image_csv "
                        "reads a CSV of image paths and labels")
    header, *body = csv_rows(path) or [[]]
    header = csv_header(header, path) if header else []
    for column in (path_column, target):
        if column not in header:
            raise DataError(f"{path}: no column '{column}'; columns: {', '.join(header) or '(none)'} (set data.options.path_column / data.target)")
    p, t = header.index(path_column), header.index(target)
    files, labels = [], []
    for i, row in enumerate(body):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: row {i} (line {i + 2}) has {len(row)} fields but the header has {len(header)}; fix the ragged row")
        name, label = row[p].strip(), row[t].strip()
        for column, cell in ((path_column, name), (target, label)):
            if not cell:
                raise DataError(f"{path}: row {i} (line {i + 2}) has no {'label' if column == target else 'file'}: column "
                                f"'{column}' is empty; drop that row or fill it in")
        file = path.parent / name
        if not file.is_file():
            raise DataError(f"{path}: row {i} (line {i + 2}) names '{file}', which does not exist")
        files.append(file)
        labels.append(label)
    if not files:
        raise DataError(f"{path}: no rows below the header; give one row per image")
    names = sorted(set(labels))
    if len(names) < 2:
        raise DataError(f"{path}: all {len(files)} images are class '{names[0]}'; classification needs at least 2 classes")
    lookup = {n: i for i, n in enumerate(names)}
    return files, [lookup[v] for v in labels], names


@dataclass
class ImageSplits:
    """What load_data returns for image files: the datasets of each split (evaluation transform
    applied for val/test, none for train: its random transform runs in the loader), the training
    transform, the normalization statistics and the evaluation transform."""

    train: ImageFiles
    val: ImageFiles
    test: ImageFiles
    train_transform: Compose
    eval_transform: Compose
    mean: list[float]
    std: list[float]


def fit_statistics(files: list[Path], channels: int, transform: Compose, limit: int = FIT_SAMPLES) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of up to `limit` images (evenly spaced over `files`), after `transform`."""
    take = np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)
    total = torch.zeros(channels, dtype=torch.float64)
    square = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for i in take:
        x = transform(load_image(files[int(i)], channels)).double()
        total += x.sum(dim=(1, 2))
        square += x.pow(2).sum(dim=(1, 2))
        count += x.shape[1] * x.shape[2]
    mean = total / count
    std = (square / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def image_splits(files: list[Path], labels: list[int], indices: dict[str, np.ndarray], channels: int, image_size: int,
                 transforms: dict[str, Any] | None, normalize: Any) -> ImageSplits:
    """The three splits' datasets and the transforms, normalized as `normalize` says ("standard":
    fitted on the training images; {"mean", "std"}: given; "none": inputs stay in [0, 1])."""
    options = {**(transforms or {}), "image_size": image_size}
    options.pop("normalize", None)
    try:
        plain = from_config(options, train=False)
        if isinstance(normalize, dict):
            mean, std = list(normalize["mean"]), list(normalize["std"])
        elif normalize == "standard":
            train_files = [files[i] for i in indices["train"]]
            mean, std = fit_statistics(train_files, channels, plain)
        else:
            mean, std = [0.0] * channels, [1.0] * channels
        options["normalize"] = {"mean": mean, "std": std}
        train_transform, eval_transform = from_config(options, train=True), from_config(options, train=False)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"data.transforms: {exc}") from None
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"data.normalize: give {channels} means and stds (one per channel), got {len(mean)} and {len(std)}")
    part = {name: ImageFiles([files[i] for i in idx], [labels[i] for i in idx], channels,
                             eval_transform if name != "train" else None) for name, idx in indices.items()}
    return ImageSplits(part["train"], part["val"], part["test"], train_transform, eval_transform, mean, std)


def with_normalize(transform: Compose) -> Normalize | None:
    return next((t for t in transform.transforms if isinstance(t, Normalize)), None)
