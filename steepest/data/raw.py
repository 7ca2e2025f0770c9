"""The in-memory form every data source returns before splitting and normalization."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawData:
    """Features and targets as numpy arrays, plus what is known about them.

    `x_test`/`y_test` hold an official test split when the data set ships one (MNIST);
    otherwise the splitter carves the test split out of `x`/`y`.
    """

    x: np.ndarray
    y: np.ndarray
    task: str = "auto"  # classification | regression | binary | multilabel | auto
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    kind: str = "tabular"  # tabular | image | sequence
    num_classes: int | None = None
    meta: dict = field(default_factory=dict)
