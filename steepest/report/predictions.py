"""The finished model on its own test split, for the report: the confusion matrix or the
regression residuals, the most confidently wrong samples (as images, text or feature rows), and a
grid of training samples after the recipe's augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steepest.config.load import load_run_recipe
from steepest.data import Split, load_data
from steepest.data.augment import for_data
from steepest.data.bundle import in_memory_sample
from steepest.data.normalize import Standardizer
from steepest.data.text import decode_ids
from steepest.predict import Predictor


@dataclass
class TestView:
    task: str
    class_names: list[str] = field(default_factory=list)
    confusion: np.ndarray | None = None  # (K, K): rows true, columns predicted
    true: np.ndarray | None = None  # regression, original units
    predicted: np.ndarray | None = None
    wrong_images: np.ndarray | None = None  # (n, C, H, W), raw scale
    wrong_titles: list[str] = field(default_factory=list)
    wrong_rows: list[dict[str, Any]] = field(default_factory=list)  # text or tabular samples
    augmented: np.ndarray | None = None  # (n, C, H, W) training samples after augmentation


REPORT_SAMPLES = 4096  # test samples the report reads from Dataset-backed data (seeded subset)


@torch.no_grad()
def test_view(run_dir: str | Path, trust_code: bool = False, worst: int = 16) -> TestView:
    """Rebuild the run's model and data (the same split from its seeds) and look at the test split."""
    run = Path(run_dir)
    predictor = Predictor.load(run, trust_code=trust_code)
    recipe = load_run_recipe(run / "config.yaml", trust_code=trust_code)
    data = in_memory_sample(load_data(recipe.data, recipe.trainer.seed), REPORT_SAMPLES, recipe.trainer.seed)  # Dataset splits: a sample
    info = predictor.info
    x, y = data.test.x, data.test.y
    outputs = torch.cat([predictor.model(x[i : i + 512]).float() for i in range(0, len(x), 512)]) if len(x) else torch.empty(0)
    view = TestView(info.task, list(info.class_names or []))
    raw = Standardizer.from_dict(info.x_norm).inverse(x.numpy()) if info.x_norm else x.numpy()
    if info.task == "classification" and len(x):
        k = info.num_classes
        view.class_names = view.class_names or [str(i) for i in range(k)]
        probs = torch.softmax(outputs, dim=1)
        pred, truth = probs.argmax(1), y.reshape(-1).long()
        view.confusion = torch.bincount(truth * k + pred, minlength=k * k).reshape(k, k).numpy()
        wrong = torch.nonzero(pred != truth).reshape(-1)
        order = wrong[probs[wrong, pred[wrong]].argsort(descending=True)][:worst]
        titles = [f"{view.class_names[int(truth[i])]} -> {view.class_names[int(pred[i])]} ({float(probs[i, pred[i]]):.2f})" for i in order]
        _samples(view, info, raw, order.numpy(), titles)
    elif info.task in ("regression",) and len(x):
        y_norm = Standardizer.from_dict(info.y_norm) if info.y_norm else None
        view.predicted = y_norm.inverse(outputs.numpy()) if y_norm else outputs.numpy()
        view.true = y_norm.inverse(y.numpy()) if y_norm else y.numpy()
    augment = (recipe.data.augment or None) and info.kind == "image"
    if augment and isinstance(data.train, Split):
        transform, _ = for_data(recipe.data.augment, info)
        sample = data.train.x[:16]
        view.augmented = transform(sample, torch.Generator().manual_seed(0)).numpy()
    return view


def _samples(view: TestView, info, raw: np.ndarray, index: np.ndarray, titles: list[str]) -> None:
    if info.kind == "image" and raw.ndim == 4:
        view.wrong_images, view.wrong_titles = raw[index], titles
    elif info.text:
        view.wrong_rows = [{"sample": decode_ids(raw[i], info.text["tokenizer"])[:300], "label -> predicted (p)": t}
                           for i, t in zip(index, titles)]
    else:
        names = list(info.feature_names or [f"x{j}" for j in range(raw.shape[1])])[:8]
        view.wrong_rows = [{"label -> predicted (p)": t, **{n: f"{v:.4g}" for n, v in zip(names, raw[i].reshape(-1))}}
                           for i, t in zip(index, titles)]
