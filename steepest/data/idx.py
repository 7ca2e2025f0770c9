"""MNIST-style IDX files (gzipped or not) and where to find them on this machine."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from steepest.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


MAX_IDX_DIMS = 4  # vectors, matrices, image stacks, stacks of colour images
_CHUNK = 1 << 22
_REINSTALL = "reinstall it with 'steepest data install'"


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in .gz): magic (0, 0, dtype code, ndim), ndim
    big-endian uint32 sizes, then the data. Returns an array of those sizes in native byte order.

    A header that is not IDX or names more than MAX_IDX_DIMS dimensions, and data bytes that differ
    from what the sizes promise, are DataErrors. Nothing is allocated from the header: the data is
    read in chunks and at most one byte past the promised count.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
                raise DataError(f"{path} is not an IDX file (bad magic number); {_REINSTALL}")
            ndim = magic[3]
            if not 1 <= ndim <= MAX_IDX_DIMS:
                raise DataError(f"{path}: corrupt IDX header ({ndim} dimensions, IDX data has 1 to {MAX_IDX_DIMS}); {_REINSTALL}")
            head = f.read(4 * ndim)
            if len(head) < 4 * ndim:
                raise DataError(f"{path}: the IDX header is cut short ({len(head)} of {4 * ndim} size bytes); {_REINSTALL}")
            dims = struct.unpack(f">{ndim}I", head)
            dtype = np.dtype(_DTYPES[magic[2]])
            expected = math.prod(dims) * dtype.itemsize
            body = bytearray()
            while len(body) <= expected and (chunk := f.read(min(_CHUNK, expected + 1 - len(body)))):
                body += chunk
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; {_REINSTALL}") from None
    if len(body) < expected:
        raise DataError(f"{path} is truncated: {len(body)} of {expected} data bytes; {_REINSTALL}")
    if len(body) > expected:
        raise DataError(f"{path} has more data than its header ({' x '.join(map(str, dims))}) describes; {_REINSTALL}")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def check_idx_set(parts: dict[str, np.ndarray], where: Path) -> None:
    """The four arrays of an IDX data set agree: images (n, rows, cols) with labels (n,) in each
    split, and the same image size in both; otherwise a DataError (files from different sets)."""
    for split in ("train", "test"):
        images, labels = parts[f"{split}_images"], parts[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{where}: {split} images have shape {images.shape} but labels {labels.shape}; expected (n, rows, cols) "
                            f"and (n,): the files do not belong together; {_REINSTALL}")
    if parts["train_images"].shape[1:] != parts["test_images"].shape[1:]:
        raise DataError(f"{where}: train images are {parts['train_images'].shape[1:]} but test images {parts['test_images'].shape[1:]}; "
                        f"the files do not belong together; {_REINSTALL}")


def candidate_dirs(name: str, data_dir: str | None = None) -> list[Path]:
    """Where a data set is looked for, in order."""
    dirs = []
    if data_dir:
        dirs += [Path(data_dir) / name, Path(data_dir)]
    env = os.environ.get("STEEPEST_DATA_DIR")
    if env:
        dirs += [Path(p) / name for p in env.split(os.pathsep)]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steepest" / name
    dirs += [cache, Path("/usr/share/datasets") / name]
    return dirs


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steepest" / name


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    return None


def locate(name: str, data_dir: str | None = None) -> Path:
    """The first directory holding all four IDX files of `name`, or a DataError saying how to get them."""
    for folder in candidate_dirs(name, data_dir):
        if all(find_idx_file(folder, stem) for stem in IDX_FILES.values()):
            return folder
    looked = ", ".join(str(d) for d in candidate_dirs(name, data_dir))
    raise DataError(f"data set '{name}' not found (looked in {looked}); run 'steepest data install {name}' or set STEEPEST_DATA_DIR")


def load_idx_dataset(name: str, data_dir: str | None = None) -> dict[str, np.ndarray]:
    """The four arrays of `name` (IDX_FILES keys), checked to belong together."""
    folder = locate(name, data_dir)
    parts = {key: read_idx(find_idx_file(folder, stem)) for key, stem in IDX_FILES.items()}  # type: ignore[arg-type]
    check_idx_set(parts, folder)
    return parts
