"""Tokens: a byte-level tokenizer (every UTF-8 byte is a token, no vocabulary to download, plus pad,
bos, eos), and token files: a corpus tokenized once into one memory-mapped row of ids, read by a
language model as windows of block_size + 1 tokens (`TokenWindows`, `token_windows`).

    >>> tok = ByteTokenizer()
    >>> ids = tok.encode("hé")
    >>> ids, tok.decode(ids)
    ([257, 104, 195, 169, 258], 'hé')
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from steepest.data.arrays import open_npy
from steepest.data.idx import candidate_dirs
from steepest.errors import DataError


class ByteTokenizer:
    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        return ([self.bos_id] if bos else []) + list(text.encode("utf-8")) + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- token files
# A corpus tokenized once (`python -m steepest.data.corpus`): FOLDER/tokens.npy, every document's
# ids one after another, each preceded by a separator token (GPT-2's <|endoftext|> convention), as
# uint16 when the vocabulary fits (2 bytes a token) else int32; FOLDER/tokens.json says which
# tokenizer wrote it (name, vocab_size, separator) and from what. Training reads windows of it
# through a memory map: nothing is loaded whole, and every DataLoader process maps the file itself.

TOKENS_FILE, META_FILE = "tokens.npy", "tokens.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 for vocabularies of at most 65,536 tokens, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


def write_token_file(folder: str | Path, documents: Iterable[Sequence[int]], vocab_size: int, separator: int,
                     meta: dict[str, Any] | None = None) -> Path:
    """Write FOLDER/tokens.npy (the documents' ids, each document preceded by `separator`) and
    FOLDER/tokens.json (`meta` plus vocab_size, separator, dtype, documents, tokens); returns the
    .npy path. ValueError for an id outside [0, vocab_size). Each file is written to a temporary
    name and renamed, so a reader never sees half a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    parts, count = [], 0
    for doc in documents:
        ids = np.asarray([separator, *doc], dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"document {count}: token id {int(ids.max() if ids.max() >= vocab_size else ids.min())} is outside [0, {vocab_size})")
        parts.append(ids.astype(dtype))
        count += 1
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype)
    path = folder / TOKENS_FILE
    with open(folder / f".{TOKENS_FILE}.tmp", "wb") as f:
        np.save(f, tokens)
    os.replace(folder / f".{TOKENS_FILE}.tmp", path)
    info = {**(meta or {}), "vocab_size": int(vocab_size), "separator": int(separator), "dtype": dtype.name,
            "documents": count, "tokens": int(tokens.size)}
    (folder / f".{META_FILE}.tmp").write_text(json.dumps(info, indent=2) + "\n")
    os.replace(folder / f".{META_FILE}.tmp", folder / META_FILE)
    return path


def find_token_file(path: str | Path, data_dir: str | None = None) -> Path:
    """The tokens.npy that `path` names: the file itself, a folder holding it, or a folder name looked
    up where data sets live (`data_dir`, then each STEEPEST_DATA_DIR entry, then ~/.cache/steepest).
    DataError (one line, listing where it looked and how to make one) when none exists."""
    given = Path(path).expanduser()
    candidates = [given] if given.suffix == ".npy" else [given / TOKENS_FILE]
    if given.suffix != ".npy" and not given.is_absolute():
        candidates += [d / TOKENS_FILE for d in candidate_dirs(str(path), data_dir) if d != given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"token file '{path}' not found (looked in {looked}); write one with "
                    "python -m steepest.data.corpus --out FOLDER (a corpus tokenized once)")


def read_token_meta(path: str | Path) -> dict[str, Any]:
    """tokens.json next to the token file `path` ({} when there is none)."""
    meta = Path(path).with_name(META_FILE)
    return json.loads(meta.read_text()) if meta.is_file() else {}


def open_tokens(path: str | Path) -> np.ndarray:
    """The token file memory-mapped read-only: a 1-D integer array. DataError otherwise."""
    tokens = open_npy(path, "token ids")
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise DataError(f"{path}: a token file is one row of integer ids; this one has shape {tokens.shape} and dtype {tokens.dtype}")
    return tokens


def random_starts(lo: int, hi: int, block_size: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` window starts drawn uniformly (with replacement, from a generator seeded with `seed`)
    so that the window [s, s + block_size] lies in the token range [lo, hi)."""
    return lo + np.random.default_rng(seed).integers(0, hi - lo - block_size, size=count, dtype=np.int64)


def tiled_starts(lo: int, hi: int, block_size: int) -> np.ndarray:
    """Starts lo, lo + block_size, ...: consecutive windows, each target token scored once."""
    return np.arange(lo, hi - block_size, block_size, dtype=np.int64)


class TokenWindows(Dataset):
    """Windows of `block_size` + 1 tokens of a token file, a map-style Dataset: sample i is
    (x, y) = (w[:-1], w[1:]) with w = tokens[s : s + block_size + 1], s = starts[i], both int64
    tensors (block_size,): inputs and their next tokens. `__getitems__` reads a micro-batch with
    one gather. `targets` (N, block_size) are every window's y (read on demand, N * block_size * 8
    bytes; `steepest.data.bundle` reads them once, for the data's description).

    The file is opened lazily in each process; a pickled or forked copy holds the path and the
    starts, never the mapped data.

        >>> import shutil, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> path = write_token_file(folder, [[5, 6, 7, 8, 9]], vocab_size=10, separator=0)
        >>> x, y = TokenWindows(path, block_size=3, starts=np.array([1]))[0]
        >>> x.tolist(), y.tolist()
        ([5, 6, 7], [6, 7, 8])
        >>> shutil.rmtree(folder)
    """

    def __init__(self, path: str | Path, block_size: int, starts: np.ndarray):
        self.path, self.block_size = str(path), int(block_size)
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self._tokens: np.ndarray | None = None
        n = len(self._open())
        if len(self.starts) and (self.starts.min() < 0 or self.starts.max() + self.block_size >= n):
            raise DataError(f"{path}: a window of {self.block_size + 1} tokens starting at {int(self.starts.max())} runs past the "
                            f"file's {n} tokens")
        self._offsets = np.arange(self.block_size + 1, dtype=np.int64)

    def _open(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = open_tokens(self.path)
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokens": None}  # each process maps the file itself

    def __len__(self) -> int:
        return len(self.starts)

    def windows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The windows of samples `indices`: (k, block_size + 1) int64, one gather from the file."""
        return self._open()[self.starts[np.asarray(indices, dtype=np.int64)][:, None] + self._offsets].astype(np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(self.windows([i])[0])
        return w[:-1], w[1:]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        w = torch.from_numpy(self.windows(indices))
        return [(row[:-1], row[1:]) for row in w]

    @property
    def targets(self) -> np.ndarray:
        return self.windows(np.arange(len(self)))[:, 1:]


def token_windows(path: str, block_size: int = 256, val_fraction: float = 0.05, test_fraction: float = 0.05,
                  windows: int | None = None, eval_windows: int | None = None, seed: int = 0,
                  data_dir: str | None = None) -> dict[str, TokenWindows]:
    """The `data.component` of a language model trained on a token file (`find_token_file(path)`):
    {"train", "val", "test"} `TokenWindows` over consecutive stretches of the stream (the first
    1 - val_fraction - test_fraction of its tokens, then val, then test: no window crosses a split).
    Training windows start at random positions (`windows` of them, default one per block_size
    tokens of its stretch; drawn once from `seed`, the loader shuffles their order each epoch);
    held-out windows tile their stretch (the first `eval_windows` of them, default all).

        data: {component: steepest.data.tokens:token_windows, stream: true, task: language_modeling,
               options: {path: bbc_news-smollm2, block_size: 256}}

    DataError when a split is too short to hold one window."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise DataError(f"data.options.block_size must be a positive whole number, got {block_size!r}")
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"data.options: val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be shares of the "
                        "stream in [0, 1) (val above 0) that leave some for training")
    file = find_token_file(path, data_dir)
    n = len(open_tokens(file))
    a = int(round(n * (1 - val_fraction - test_fraction)))
    b = int(round(n * (1 - test_fraction)))
    ranges = {"train": (0, a), "val": (a, b), "test": (b, n)} if test_fraction else {"train": (0, a), "val": (a, n)}
    for name, (lo, hi) in ranges.items():
        if hi - lo <= block_size:
            raise DataError(f"{file}: the {name} split holds {hi - lo} tokens, too few for one window of {block_size + 1} "
                            f"({n} tokens in all); lower data.options.block_size or use a longer corpus")
    lo, hi = ranges["train"]
    out = {"train": TokenWindows(file, block_size, random_starts(lo, hi, block_size, windows or max((hi - lo) // block_size, 1), seed))}
    for name in ("val", "test"):
        if name in ranges:
            out[name] = TokenWindows(file, block_size, tiled_starts(*ranges[name], block_size)[:eval_windows])
    return out
