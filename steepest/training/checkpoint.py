"""Atomic, checksummed, pickle-free checkpoints, and a manager that keeps the last k and the best.

File format: one `.safetensors` file. Its metadata holds the state's JSON skeleton and a SHA-256
over the skeleton and every tensor's bytes, so truncation and bit flips are both detected.
Writes go to a temporary file in the same folder, are fsynced, then renamed over the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from steepest.errors import CheckpointError
from steepest.training.serialization import flatten, unflatten
from steepest.training.state import TrainState

FORMAT = "steepest-checkpoint/1"


def _digest(skeleton_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(skeleton_json.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and os.replace (its folder made
    when missing): a reader sees the old file or the new one, never a part. On an OSError the temp
    file is removed and the old file is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (nested plain data and tensors) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(flatten(state, tensors))
    meta = {"format": FORMAT, "state": skeleton, "sha256": _digest(skeleton, tensors)}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; a CheckpointError names what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a steepest checkpoint (format {meta.get('format')!r})")
    skeleton = meta.get("state", "")
    if not isinstance(skeleton, str) or _digest(skeleton, tensors) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path} failed its checksum (corrupted on disk)")
    try:
        state = unflatten(json.loads(skeleton), tensors)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # well-formed bytes, ill-formed contents
        raise CheckpointError(f"checkpoint {path} has an invalid structure ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a training state")
    return state


_STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")
_TEMP_FILE = re.compile(r"^\..+\.tmp-(\d+)$")  # what atomic_write_bytes leaves when killed mid-write


def sweep_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files of interrupted atomic writes in `folder` (those whose writing process
    is gone); returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_FILE.match(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes nothing while it sweeps
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class CheckpointManager:
    """`dir/step-00000120.safetensors` for the last `keep_last` saves, plus `dir/best.safetensors`."""

    def __init__(self, directory: str | Path, keep_last: int = 2):
        self.dir = Path(directory)
        self.keep_last = keep_last

    def step_files(self) -> list[tuple[int, Path]]:
        if not self.dir.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        path = self.dir / f"step-{step:08d}.safetensors"
        save_state(path, state)
        for _, old in self.step_files()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        path = self.dir / "best.safetensors"
        save_state(path, state)
        return path

    def candidates(self, validate: Callable[[int, dict[str, Any]], None] | None = None) -> Iterator[tuple[dict[str, Any], Path]]:
        """Checkpoints that verify (checksum, structure, and `validate(step, state)` when given:
        it raises ValueError or CheckpointError for a state that cannot be used), newest first;
        the others are skipped with a warning."""
        for step, path in reversed(self.step_files()):
            try:
                state = load_state(path)
                if validate is not None:
                    validate(step, state)
            except CheckpointError as exc:
                warnings.warn(f"{exc}; falling back to the previous checkpoint", stacklevel=2)
                continue
            except ValueError as exc:
                warnings.warn(f"checkpoint {path} is invalid ({exc}); falling back to the previous checkpoint", stacklevel=2)
                continue
            yield state, path

    def load_latest(self, validate: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that verifies (see `candidates`), or None."""
        return next(self.candidates(validate), None)


def validate_training_state(step: int, state: dict[str, Any]) -> None:
    """A Trainer's checkpoint: a valid train state whose step is the one in the file name (a file
    whose checksum holds may still have been crafted: `step: "abc"`, `step: 1e9`)."""
    train_state = TrainState.from_dict(state.get("train_state"))
    if train_state.step != step:
        raise ValueError(f"it holds step {train_state.step}, not the step {step} of its name")
