"""Model ensembles: K members trained from one recipe, their predictions averaged (Dietterich 2000; deep ensembles: Lakshminarayanan et al. 2017).

Members differ by seed (initialization, data order, dropout) or, with `folds=K`, also by data: member
k trains on the training split without its k-th fold (the validation and test splits are shared).

The report gives the variance reduction exactly. For squared error on the averaged prediction
p̄ = mean_k p_k (values, or class probabilities for the Brier score), the ambiguity decomposition
(Krogh & Vedelsby 1995) holds per sample:

    (p̄ - y)² = mean_k (p_k - y)² - mean_k (p_k - p̄)²

so the ensemble's loss is the mean member's loss minus the members' prediction variance: the
ensemble is never worse than its average member, and it gains exactly as much as the members
disagree. With member variance v and pairwise correlation rho, averaging K members leaves
rho v + (1 - rho) v / K of the variance.

    >>> models, report = train_ensemble(load_recipe("digits_mlp"), members=5)   # doctest: +SKIP
    >>> print(report.summary())                                                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from steepest.config import Recipe, recipe_to_dict
from steepest.config.load import recipe_from_dict
from steepest.data import load_data
from steepest.data.containers import Split
from steepest.run import build_run


@dataclass
class EnsembleReport:
    member_scores: list[float]  # accuracy (classification, binary, multilabel) or R² (regression)
    ensemble_score: float
    metric: str
    member_losses: list[float]  # squared error of each member: MSE, or the Brier score on probabilities
    ensemble_loss: float
    prediction_variance: float  # mean over test samples of the members' variance = the loss removed by averaging

    @property
    def mean_member(self) -> float:
        return sum(self.member_scores) / len(self.member_scores)

    @property
    def mean_member_loss(self) -> float:
        return sum(self.member_losses) / len(self.member_losses)

    @property
    def variance_reduction(self) -> float:
        """Share of the mean member's squared error removed by averaging."""
        return self.prediction_variance / self.mean_member_loss if self.mean_member_loss > 0 else 0.0

    def summary(self) -> str:
        loss = "brier" if self.metric != "r2" else "mse"
        return (f"{len(self.member_scores)} members: {self.metric} " + ", ".join(f"{s:.4f}" for s in self.member_scores)
                + f" (mean {self.mean_member:.4f}); ensemble {self.ensemble_score:.4f}; {loss} mean member "
                + f"{self.mean_member_loss:.4g} -> ensemble {self.ensemble_loss:.4g} (member variance {self.prediction_variance:.3g}, "
                + f"{100 * self.variance_reduction:.1f}% less)")


def probabilities(outputs: Tensor, task: str) -> Tensor:
    """What the members average: class probabilities, positive-class probabilities, or values."""
    if task == "classification":
        return outputs.float().softmax(-1)
    if task in ("binary", "multilabel"):
        return outputs.float().sigmoid()
    return outputs.float()


def average(models: list[torch.nn.Module], x: Tensor, task: str) -> Tensor:
    """The ensemble's prediction: the mean of the members' probabilities (or values)."""
    with torch.no_grad():
        return torch.stack([probabilities(m.eval()(x), task) for m in models]).mean(0)


def _score(p: Tensor, y: Tensor, task: str) -> float:
    if task == "classification":
        return float((p.argmax(-1) == y).float().mean())
    if task in ("binary", "multilabel"):
        return float(((p > 0.5) == (y.reshape(p.shape) > 0.5)).float().mean())
    y = y.reshape(p.shape).float()
    return float(1 - ((p - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def _targets(y: Tensor, p: Tensor, task: str) -> Tensor:
    if task == "classification":
        return torch.nn.functional.one_hot(y.long(), p.shape[-1]).float()
    return y.reshape(p.shape).float()


def report(preds: Tensor, y: Tensor, task: str) -> EnsembleReport:
    """Scores and the ambiguity decomposition for member predictions `preds` (K, N, ...)."""
    mean = preds.mean(0)
    target = _targets(y, mean, task)
    per_sample = lambda p: (p - target).reshape(len(target), -1).square().sum(1).mean()  # noqa: E731
    spread = (preds - mean).reshape(len(preds), len(target), -1).square().sum(2).mean()  # mean_k, mean_i
    return EnsembleReport(
        member_scores=[_score(p, y, task) for p in preds],
        ensemble_score=_score(mean, y, task),
        metric="r2" if task == "regression" else "accuracy",
        member_losses=[float(per_sample(p)) for p in preds],
        ensemble_loss=float(per_sample(mean)),
        prediction_variance=float(spread),
    )


def train_ensemble(recipe: Recipe, members: int = 5, seeds: list[int] | None = None, folds: bool = False,
                   data=None) -> tuple[list[torch.nn.Module], EnsembleReport]:
    """Train `members` models (seeds 0..K-1 unless given) on one shared split; `folds=True`: member k
    leaves out the k-th of K folds of the training split. Returns the models and the test-split report."""

    seeds = list(seeds) if seeds is not None else list(range(members))
    data = data or load_data(recipe.data, recipe.trainer.seed)  # one split shared by every member
    if folds:
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(recipe.data.split_seed))
        parts = order.tensor_split(len(seeds))
    models, outputs = [], []
    for k, seed in enumerate(seeds):
        d = recipe_to_dict(recipe)
        d["trainer"]["seed"] = seed
        d["checkpoint"]["enabled"] = False
        member_data = data
        if folds:
            keep = torch.cat([p for j, p in enumerate(parts) if j != k]).sort().values
            member_data = replace(data, train=Split(data.train.x[keep], data.train.y[keep]))
        run = build_run(recipe_from_dict(d), None, data=member_data, console=False)
        run.trainer.fit()
        model = run.trainer.unwrapped_model.eval()
        with torch.no_grad():
            outputs.append(probabilities(model(run.data.test.x), data.info.task).cpu())
        models.append(model)
    return models, report(torch.stack(outputs), data.test.y.cpu(), data.info.task)
