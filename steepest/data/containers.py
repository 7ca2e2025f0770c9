"""What loading data produces: the splits (tensors in memory, or Datasets read sample by sample),
what the data is (`DataInfo`), and the rule that reads a task from labels. Below every reader, so
each reader (CSV, image files, memory-mapped arrays, Hugging Face datasets) builds these without
importing the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

MAX_AUTO_CLASSES = 100


@dataclass
class DataInfo:
    """What the rest of steepest needs to know about the data (saved with every run)."""

    source: str
    task: str
    input_shape: tuple[int, ...]
    num_outputs: int
    num_classes: int | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    kind: str = "tabular"
    sizes: dict[str, int] = field(default_factory=dict)
    fractions: tuple[float, float, float] | None = None
    x_norm: dict | None = None
    y_norm: dict | None = None
    text: dict | None = None  # {tokenizer, max_length} of token-id inputs (steepest.data.text)
    images: dict | None = None  # {image_size, channels, mean, std} of image files (steepest.data.images)
    tabular: dict | None = None  # the TabularEncoder of categorical / imputed CSV columns (steepest.data.tabular)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class DatasetSplit:
    """A split read sample by sample: a map-style Dataset (never materialized), its labels (N,)
    (for stratification, class weights, the output bias), and the per-sample transform training
    runs in the loader (random, seeded per (seed, epoch, index)); None for held-out splits."""

    dataset: Dataset
    y: torch.Tensor
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.dataset)


def split_size(part: Split | DatasetSplit) -> int | None:
    """Samples in a split; None for a stream that does not know its length."""
    try:
        return len(part)
    except TypeError:
        return None


@dataclass
class DataBundle:
    """The three splits (tensors in memory, or Datasets read sample by sample), what they are
    (`info`) and what `data.balance` asks of training: `sample_weights` (N_train,) for a weighted
    sampler, `class_weights` (K,) for the loss."""

    train: Split | DatasetSplit
    val: Split | DatasetSplit
    test: Split | DatasetSplit
    info: DataInfo
    sample_weights: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> DataBundle:
        """In-memory splits moved to `device` (Dataset splits are moved batch by batch by their loader)."""
        move = lambda s: Split(s.x.to(device), s.y.to(device)) if isinstance(s, Split) else s  # noqa: E731
        return DataBundle(move(self.train), move(self.val), move(self.test), self.info, self.sample_weights, self.class_weights)


def task_from_labels(y: np.ndarray) -> str:
    """multilabel for 0/1 indicator rows (N, K); classification for at most MAX_AUTO_CLASSES
    distinct finite integer values (N,); regression otherwise."""
    y = np.asarray(y)
    if y.ndim == 2 and np.isin(y, (0, 1)).all():
        return "multilabel"
    if y.ndim == 1 and np.issubdtype(y.dtype, np.number) and np.isfinite(y).all() and (y == np.round(y)).all():
        if len(np.unique(y)) <= MAX_AUTO_CLASSES:
            return "classification"
    return "regression"
