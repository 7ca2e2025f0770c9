"""MNIST-style IDX files (gzipped or not) and where to find them on this machine."""

from __future__ import annotations

import gzip
import os
import struct
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


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file: magic (0, 0, dtype, ndim), big-endian dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; reinstall it with 'steepest data install'") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(f"{path} is truncated: {len(body)} of {expected} data bytes; reinstall it with 'steepest data install'")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


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
    folder = locate(name, data_dir)
    return {key: read_idx(find_idx_file(folder, stem)) for key, stem in IDX_FILES.items()}  # type: ignore[arg-type]
