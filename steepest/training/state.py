"""Everything about a run's position that a resume needs, as plain values."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """The run's position. The skipped-step counters are counted on the device while training (0-d
    int64 tensors, no host sync per step) and are plain ints once read (`read_nonfinite`: the
    Trainer reads them at log steps, epoch ends, checkpoints and the end); `to_dict` reads them."""

    step: int = 0  # optimizer steps taken (a skipped step counts: the schedules and the data order move on)
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # optimizer steps taken in the current epoch (the data-order position)
    nonfinite_in_row: int | torch.Tensor = 0  # skipped steps ending at the current one
    nonfinite_total: int | torch.Tensor = 0
    stop_reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # the latest evaluation

    def request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason

    def count_nonfinite(self, skipped: torch.Tensor) -> torch.Tensor:
        """Count a step as skipped (a 0-d bool tensor True) or taken, on the device: no host sync,
        no allocation after the first step. Returns the in-a-row count.

            >>> s = TrainState(); _ = s.count_nonfinite(torch.tensor(True)); _ = s.count_nonfinite(torch.tensor(True))
            >>> s.read_nonfinite(); (s.nonfinite_in_row, s.nonfinite_total)
            (2, 2)
            >>> _ = s.count_nonfinite(torch.tensor(False)); s.read_nonfinite(); (s.nonfinite_in_row, s.nonfinite_total)
            (0, 2)
        """
        if not isinstance(self.nonfinite_total, torch.Tensor):  # a fill, not a copy from the host
            self.nonfinite_in_row, self.nonfinite_total = (torch.full((), int(v), dtype=torch.int64, device=skipped.device)
                                                           for v in (self.nonfinite_in_row, self.nonfinite_total))
        self.nonfinite_in_row.add_(skipped).mul_(skipped)
        self.nonfinite_total.add_(skipped)
        return self.nonfinite_in_row

    def read_nonfinite(self) -> None:
        """The counters as ints (one host read when they are on the device)."""
        if isinstance(self.nonfinite_total, torch.Tensor):  # counted together: both on the device
            self.nonfinite_in_row, self.nonfinite_total = torch.stack([self.nonfinite_in_row, self.nonfinite_total]).tolist()

    def to_dict(self) -> dict[str, Any]:
        self.read_nonfinite()
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """The state saved by `to_dict`; ValueError when a field is missing or of the wrong kind (a
        checkpoint whose checksum holds but whose contents were crafted or written by other code)."""
        if not isinstance(d, dict) or set(d) != {f.name for f in fields(cls)}:
            raise ValueError(f"train_state must have exactly the fields {sorted(f.name for f in fields(cls))}")
        for key in ("step", "epoch", "step_in_epoch", "nonfinite_in_row", "nonfinite_total"):
            if type(d[key]) is not int or not 0 <= d[key] < 2**53:
                raise ValueError(f"train_state.{key} must be a whole number >= 0, got {d[key]!r}")
        if not isinstance(d["stop_reason"], str) or not isinstance(d["metrics"], dict):
            raise ValueError("train_state.stop_reason must be text and train_state.metrics a mapping")
        if not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in d["metrics"].items()):
            raise ValueError("train_state.metrics must map names to numbers")
        if d["step_in_epoch"] > d["step"] or d["epoch"] > d["step"]:
            raise ValueError(f"train_state is inconsistent: epoch {d['epoch']}, step {d['step']}, step_in_epoch {d['step_in_epoch']}")
        return cls(**d)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomState:
    """Every random generator of a run, saved and restored as one: the global ones (Python, NumPy,
    torch CPU and CUDA: dropout, initialization) and the named `torch.Generator`s of batch
    transforms (mixup, augmentation). Checkpoints, resume and the LR finder's snapshot all go
    through `state_dict` / `load_state_dict`, so nothing random is left out of any of them.

        >>> rng = RandomState()
        >>> g = rng.generator("mixup", seed=7)
        >>> saved = rng.state_dict(); a = torch.rand(1, generator=g)
        >>> rng.load_state_dict(saved); bool(torch.rand(1, generator=g) == a)
        True
    """

    def __init__(self):
        self.generators: dict[str, torch.Generator] = {}

    def generator(self, name: str, seed: int) -> torch.Generator:
        """A new CPU generator seeded with `seed`, owned (saved and restored) under `name`."""
        if name in self.generators:
            raise ValueError(f"a generator named '{name}' already exists")
        self.generators[name] = torch.Generator().manual_seed(seed)
        return self.generators[name]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(), "generators": {k: g.get_state() for k, g in self.generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state["rng"])
        for key, gen_state in state.get("generators", {}).items():
            if key in self.generators:
                self.generators[key].set_state(gen_state)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
