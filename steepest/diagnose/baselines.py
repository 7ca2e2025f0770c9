"""Simple models on the same split as the network: the checklist's "compare against simple
baselines" (Karpathy 2019, "A Recipe for Training Neural Networks"; the Deep Learning Tuning
Playbook). A network that does not beat a logistic regression or a gradient-boosted tree on the
same data is not yet earning its cost, and one that does not beat the constant prediction has
learnt nothing. scikit-learn's estimators, fitted on the flattened training inputs:

    classification   most frequent class (DummyClassifier), logistic regression, gradient boosting
    regression       training mean (DummyRegressor), ridge regression, gradient boosting

Scores are the recipe's own metrics on the validation and test splits: accuracy and macro-F1, or
R^2 and MSE in the targets' original units. Data read sample by sample is sampled first (at most
`limit` samples per split, through the training pipeline: `steepest.data.bundle.in_memory_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from steepest.data.bundle import in_memory_sample
from steepest.data.containers import DataBundle
from steepest.data.normalize import Standardizer


@dataclass
class BaselineScores:
    """One baseline's scores: {"val_accuracy": ..., "test_accuracy": ..., ...}."""

    name: str
    scores: dict[str, float] = field(default_factory=dict)


def _estimators(task: str, seed: int) -> list[tuple[str, object]]:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    if task in ("classification", "binary"):
        return [("constant (most frequent class)", DummyClassifier(strategy="most_frequent")),
                ("logistic regression", LogisticRegression(max_iter=2000)),
                ("gradient boosting", HistGradientBoostingClassifier(random_state=seed))]
    return [("constant (training mean)", DummyRegressor(strategy="mean")), ("ridge regression", Ridge(alpha=1.0)),
            ("gradient boosting", HistGradientBoostingRegressor(random_state=seed))]


def _scores(task: str, split: str, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score

    if task in ("classification", "binary"):
        return {f"{split}_accuracy": float(accuracy_score(truth, predicted)),
                f"{split}_macro_f1": float(f1_score(truth, predicted, average="macro"))}
    return {f"{split}_r2": float(r2_score(truth, predicted)), f"{split}_mse": float(mean_squared_error(truth, predicted))}


def fit_baselines(data: DataBundle, seed: int = 0, limit: int = 20_000) -> list[BaselineScores]:
    """Each baseline fitted on the training split of `data` and scored on its val and test splits.
    Supports classification, binary and single-output regression (multi-label data: ValueError)."""
    task = data.info.task
    if task not in ("classification", "binary", "regression"):
        raise ValueError(f"baselines cover classification and regression, not a {task} task")
    data = in_memory_sample(data, limit, seed)

    def arrays(part):
        x = part.x.detach().cpu().double().reshape(len(part.x), -1).numpy()
        y = part.y.detach().cpu().numpy()
        if task == "regression":
            y = y.reshape(len(y), -1)
            if y.shape[1] != 1:
                raise ValueError("baselines cover single-output regression")
            y = Standardizer.from_dict(data.info.y_norm).inverse(y) if data.info.y_norm else y
            return x, y[:, 0]
        return x, y.reshape(-1).astype(np.int64)

    (x, y), held_out = arrays(data.train), {name: arrays(getattr(data, name)) for name in ("val", "test") if len(getattr(data, name))}
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    results = []
    # One OpenMP/BLAS thread: scikit-learn's OpenMP threads spin-wait, and beside torch's own pool (or
    # any busy core) gradient boosting on the digits took 7 minutes instead of 10 seconds on 2 cores.
    with threadpool_limits(limits=1):
        for name, estimator in _estimators(task, seed):
            estimator.fit(x, y)
            scores: dict[str, float] = {}
            for split, (xs, ys) in held_out.items():
                scores.update(_scores(task, split, ys, estimator.predict(xs)))
            results.append(BaselineScores(name, scores))
    return results


def key_metric(task: str) -> str:
    return "test_accuracy" if task in ("classification", "binary") else "test_r2"


def table(results: list[BaselineScores], network: dict[str, float] | None = None) -> str:
    """The baselines (and the network's run, when given) as aligned text rows."""
    columns = sorted({k for r in results for k in r.scores})
    rows = [(r.name, r.scores) for r in results] + ([("this network (the run)", network)] if network else [])
    width = max(len(name) for name, _ in rows)
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>14}" for c in columns)]
    for name, scores in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{scores[c]:>14.4f}" if isinstance(scores.get(c), (int, float)) else f"{'-':>14}"
                                                     for c in columns))
    return "\n".join(lines)


def compare_with_run(results: list[BaselineScores], task: str, network: dict[str, float]):
    """The doctor's verdict on a finished run against its baselines (a CheckResult named
    "baselines"): fail below the constant prediction, warn below the best other baseline."""
    from steepest.diagnose.report import fail, ok, skip, warn

    key = key_metric(task)
    mine = network.get(key)
    if not isinstance(mine, (int, float)) or not results:
        return skip("baselines", f"the run has no {key} to compare")
    constant, others = results[0], results[1:]
    best = max(others, key=lambda r: r.scores.get(key, -np.inf))
    evidence = {"network": mine, **{r.name: r.scores.get(key) for r in results}}
    if mine <= constant.scores.get(key, -np.inf):
        return fail("baselines", f"{key} {mine:.4f} is no better than the {constant.name} ({constant.scores[key]:.4f})",
                    "the network learnt nothing usable: run the doctor's training checks (overfit_tiny, learning_rate)", **evidence)
    if mine < best.scores.get(key, -np.inf):
        return warn("baselines", f"{key} {mine:.4f} is below {best.name} ({best.scores[key]:.4f}) on the same split",
                    f"tune the network (lr, capacity, regularization) until it beats {best.name}, or use {best.name}", **evidence)
    return ok("baselines", f"{key} {mine:.4f} beats every baseline (best: {best.name} {best.scores[key]:.4f})", **evidence)
