"""Model ensembles: K members trained from one recipe with different seeds, predictions averaged.

Averaging K models with prediction variance v and pairwise correlation rho leaves
rho * v + (1 - rho) * v / K of it (003 §4.1): the report gives the members' spread and the
ensemble's score next to the mean member's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from steepest.config import Recipe, recipe_to_dict
from steepest.config.load import recipe_from_dict


@dataclass
class EnsembleReport:
    member_scores: list[float]
    ensemble_score: float
    metric: str
    prediction_variance: float  # mean over test samples of the members' variance (probabilities or values)

    @property
    def mean_member(self) -> float:
        return sum(self.member_scores) / len(self.member_scores)

    def summary(self) -> str:
        return (f"{len(self.member_scores)} members: {self.metric} " + ", ".join(f"{s:.4f}" for s in self.member_scores)
                + f" (mean {self.mean_member:.4f}); ensemble {self.ensemble_score:.4f}; member prediction variance {self.prediction_variance:.3g}")


def train_ensemble(recipe: Recipe, members: int = 5, seeds: list[int] | None = None) -> tuple[list[torch.nn.Module], EnsembleReport]:
    from steepest.data import load_data
    from steepest.train.run import build_run

    seeds = seeds or list(range(members))
    data = load_data(recipe.data, recipe.trainer.seed)  # one split shared by every member
    models, outputs = [], []
    for seed in seeds:
        d = recipe_to_dict(recipe)
        d["trainer"]["seed"] = seed
        d["checkpoint"]["enabled"] = False
        run = build_run(recipe_from_dict(d), None, data=data, console=False)
        run.trainer.fit()
        model = run.trainer.unwrapped_model.eval()
        with torch.no_grad():
            outputs.append(model(run.data.test.x).float())
        models.append(model)
    y = run.data.test.y
    task = data.info.task
    if task == "classification":
        probs = torch.stack([o.softmax(-1) for o in outputs])
        scores = [float((p.argmax(-1) == y).float().mean()) for p in probs]
        ensemble = float((probs.mean(0).argmax(-1) == y).float().mean())
        metric, spread = "accuracy", float(probs.var(0).sum(-1).mean())
    else:
        preds = torch.stack(outputs).reshape(len(outputs), *y.shape)

        def r2(p):
            return float(1 - ((p - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())

        scores, ensemble = [r2(p) for p in preds], r2(preds.mean(0))
        metric, spread = "r2", float(preds.var(0).mean())
    return models, EnsembleReport(scores, ensemble, metric, spread)
