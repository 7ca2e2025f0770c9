"""Evaluation metrics accumulated on the device; one host sync per evaluation, not per batch."""

from __future__ import annotations

import math

import torch

from steepest.data.imbalance import average_precision

MAXIMIZED = ("accuracy", "f1", "r2", "auc", "recall")  # metric names containing one of these: higher is better


def metric_mode(metric: str, mode: str = "auto") -> str:
    """'max' or 'min': `mode` when given, else 'max' for accuracies, F1, R^2 and AUC, 'min' for the
    rest (losses, errors). The one rule every tracker of a best value uses.

    >>> metric_mode("val_accuracy"), metric_mode("val_loss"), metric_mode("val_loss", "max")
    ('max', 'min', 'max')
    """
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be min, max or auto, got {mode!r}")
    return "max" if any(m in metric for m in MAXIMIZED) else "min"


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` (None: nothing yet) by more than `min_delta`. A non-finite value
    (NaN, inf) never improves, so it can never become the best.

    >>> improves(float("nan"), None, "min"), improves(0.5, None, "min"), improves(0.4, 0.5, "min", 0.2)
    (False, True, False)
    """
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class ClassificationMeter:
    """Loss, accuracy and macro-F1 from a confusion matrix built with bincount."""

    def __init__(self, num_classes: int, device: torch.device):
        self.k = num_classes
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.scores: list[torch.Tensor] = []  # positive-class scores for PR-AUC (two classes only)
        self.labels: list[torch.Tensor] = []

    def update(self, loss_sum: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if self.k == 2:
            score = outputs.reshape(-1) if outputs.shape[-1] == 1 else outputs[:, 1] - outputs[:, 0]
            self.scores.append(score.detach())
            self.labels.append((targets.argmax(-1) if targets.dim() > 1 and targets.shape[-1] == 2 else targets).reshape(-1).long())
        if self.k == 2 and outputs.shape[-1] == 1:
            pred = (outputs.reshape(-1) > 0).long()
            targets = targets.reshape(-1).long()
        else:
            pred = outputs.argmax(dim=-1)
            if targets.dim() > 1:
                targets = targets.argmax(dim=-1)
        self.confusion += torch.bincount(targets * self.k + pred, minlength=self.k * self.k)
        self.loss_sum += loss_sum.double()
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        conf = self.confusion.view(self.k, self.k).double().cpu()
        tp = conf.diag()
        support = conf.sum(1)
        predicted = conf.sum(0)
        f1 = 2 * tp / (support + predicted).clamp_min(1)
        present = (support + predicted) > 0
        out = {
            "loss": float(self.loss_sum) / max(self.count, 1),
            "accuracy": float(tp.sum() / conf.sum().clamp_min(1)),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        }
        if self.scores:
            out["pr_auc"] = average_precision(torch.cat(self.scores).cpu(), torch.cat(self.labels).cpu())
        return out


class RegressionMeter:
    """Loss plus MSE, MAE and R^2 in the targets' original units (`y_mean`/`y_std` undo normalization).

    Targets are (N,) or (N, D...): R^2 is computed per output and averaged (scikit-learn's
    `r2_score` with multioutput="uniform_average"; an output whose targets are constant scores 1.0
    when predicted exactly, else 0.0, as scikit-learn's force_finite). Each output's variance is
    merged batch by batch (Chan et al. 1979), which stays exact for targets far from zero."""

    def __init__(self, device: torch.device, y_mean: torch.Tensor | None = None, y_std: torch.Tensor | None = None):
        self.y_mean, self.y_std = y_mean, y_std
        self.device = device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.se = self.ae = self.mean = self.m2 = None  # per output, float64, on the device (set at the first batch)
        self.count = 0
        self.values = 0

    def update(self, loss_sum: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        out, tgt = outputs.double().reshape(targets.shape), targets.double()
        if self.y_std is not None:
            out = out * self.y_std + self.y_mean
            tgt = tgt * self.y_std + self.y_mean
        n = len(targets)
        err = (out - tgt).reshape(n, -1)
        tgt = tgt.reshape(n, -1)
        mean = tgt.mean(0)
        m2 = (tgt - mean).square().sum(0)
        if self.se is None:
            self.se, self.ae, self.mean, self.m2 = err.square().sum(0), err.abs().sum(0), mean, m2
        else:
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
            self.se = self.se + err.square().sum(0)
            self.ae = self.ae + err.abs().sum(0)
        self.loss_sum += loss_sum.double()
        self.count += n
        self.values += targets.numel()

    def compute(self) -> dict[str, float]:
        n = max(self.values, 1)
        if self.se is None:
            return {"loss": 0.0, "mse": 0.0, "mae": 0.0, "r2": 0.0}
        se, m2 = self.se.cpu(), self.m2.cpu()
        per_output = torch.where(m2 > 0, 1 - se / m2.clamp_min(1e-300), (se == 0).double())
        return {
            "loss": float(self.loss_sum) / max(self.count, 1),
            "mse": float(se.sum()) / n,
            "mae": float(self.ae.sum()) / n,
            "r2": float(per_output.mean()),
        }


class MultilabelMeter:
    """Loss, per-label accuracy and micro-F1 for 0/1 indicator targets."""

    def __init__(self, device: torch.device):
        z = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.tp, self.fp, self.fn, self.correct = z(), z(), z(), z(), z()
        self.count = 0
        self.values = 0

    def update(self, loss_sum: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pred = outputs > 0
        truth = targets > 0.5
        self.loss_sum += loss_sum.double()
        self.tp += (pred & truth).sum()
        self.fp += (pred & ~truth).sum()
        self.fn += (~pred & truth).sum()
        self.correct += (pred == truth).sum()
        self.count += len(targets)
        self.values += targets.numel()

    def compute(self) -> dict[str, float]:
        tp, fp, fn = float(self.tp), float(self.fp), float(self.fn)
        return {
            "loss": float(self.loss_sum) / max(self.count, 1),
            "accuracy": float(self.correct) / max(self.values, 1),
            "micro_f1": 2 * tp / max(2 * tp + fp + fn, 1),
        }


class RetrievalMeter:
    """Loss and recall@k of embeddings (metric learning): the fraction of samples whose k nearest
    other samples of the split (Euclidean) include one of the same label (the retrieval measure of
    Oh Song et al. 2016 and Hermans et al. 2017). The split's embeddings are kept on the device and
    compared in chunks at `compute`."""

    def __init__(self, device: torch.device, ks: tuple[int, ...] = (1, 5)):
        self.ks = ks
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.embeddings: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, loss_sum: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.loss_sum += loss_sum.double()
        self.count += len(targets)
        self.embeddings.append(outputs.detach().float().reshape(len(outputs), -1))
        self.labels.append(targets.detach().reshape(-1))

    def compute(self, chunk: int = 1024) -> dict[str, float]:
        out = {"loss": float(self.loss_sum) / max(self.count, 1)}
        if not self.embeddings:
            return out
        e, y = torch.cat(self.embeddings), torch.cat(self.labels)
        k_max = min(max(self.ks), len(e) - 1)
        if k_max < 1:
            return out
        hits = {k: torch.zeros((), dtype=torch.long, device=e.device) for k in self.ks}
        for start in range(0, len(e), chunk):
            d = torch.cdist(e[start:start + chunk], e)
            rows = torch.arange(start, min(start + chunk, len(e)), device=e.device)
            d[rows - start, rows] = float("inf")  # not its own neighbour
            nearest = d.topk(k_max, largest=False).indices
            same = y[nearest] == y[rows, None]
            for k in self.ks:
                hits[k] += same[:, :min(k, k_max)].any(dim=1).sum()
        out.update({f"recall_at_{k}": float(hits[k]) / len(e) for k in self.ks})
        return out


class LossMeter:
    """The mean loss only (tasks without a metric of their own, or no data info)."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0

    def update(self, loss_sum: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.loss_sum += loss_sum.double()
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        return {"loss": float(self.loss_sum) / max(self.count, 1)}


def meter_for(info, device: torch.device):
    """The meter of a data set's task (`info`: a DataInfo, or None for the loss only)."""
    task = getattr(info, "task", None)
    if task in ("classification", "binary"):
        return ClassificationMeter(info.num_classes or 2, device)
    if task == "multilabel":
        return MultilabelMeter(device)
    if task == "metric":
        return RetrievalMeter(device)
    if task == "regression":
        y_norm = info.y_norm
        mean = torch.tensor(y_norm["mean"], dtype=torch.float64, device=device) if y_norm else None
        std = torch.tensor(y_norm["std"], dtype=torch.float64, device=device) if y_norm else None
        return RegressionMeter(device, mean, std)
    return LossMeter(device)


def metric_names(task: str, num_classes: int | None = None) -> list[str]:
    """The metrics an evaluation of `task` with `num_classes` reports, unprefixed (loss, accuracy, ...): the keys of
    its meter's result (two classes add PR-AUC).

    >>> metric_names("regression"), metric_names("binary", 2)[-1]
    (['loss', 'mse', 'mae', 'r2'], 'pr_auc')
    """
    from types import SimpleNamespace

    info = SimpleNamespace(task=task, num_classes=num_classes or 3, y_norm=None)
    names = list(meter_for(info, torch.device("cpu")).compute())
    return names + ["pr_auc"] if task in ("classification", "binary") and num_classes == 2 else names
