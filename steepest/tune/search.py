"""Hyperparameter search with Optuna over dotted recipe keys.

    search:
      n_trials: 20
      metric: val_loss            # any validation metric; direction inferred (loss: minimize)
      sampler: tpe                # tpe | random | grid
      pruner: median              # median | none: stop unpromising trials at evaluation points
      space:
        optimizer.lr: {type: float, low: 1e-4, high: 1e-1, log: true}
        model.dropout: {type: float, low: 0.0, high: 0.5}
        data.batch_size: {type: categorical, choices: [32, 64, 128]}

Trials live in an RDB storage (`sqlite:///DIR/study.db` by default), so a search resumes where it
stopped and several processes given the same `--storage` URL and study name search together.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from steepest.config import Recipe, recipe_from_dict, recipe_to_dict
from steepest.config.load import apply_overrides
from steepest.config.validate import validate_recipe
from steepest.config.yaml_io import dump_yaml
from steepest.errors import ConfigError
from steepest.run import train
from steepest.track import read_series
from steepest.training.events import Callback
from steepest.training.metrics import metric_mode


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("steepest search needs Optuna: pip install 'steepest[search]' (or pip install optuna)") from None
    return optuna


class PruningCallback(Callback):
    """Report each validation metric to the trial; stop the run when Optuna prunes it."""

    name = "optuna_pruning"

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_eval_end(self, trainer, split, metrics) -> None:
        if split != "val" or self.metric not in metrics:
            return
        value = metrics[self.metric]
        self.trial.report(value if math.isfinite(value) else float("inf"), trainer.state.step)
        if self.trial.should_prune():
            self.pruned = True
            trainer.state.request_stop(f"pruned by the search at step {trainer.state.step}")


def direction_of(search) -> str:
    if search.direction != "auto":
        return search.direction
    return "maximize" if metric_mode(search.metric) == "max" else "minimize"


def suggest(trial, key: str, param) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def trial_recipe(base: dict, values: dict[str, Any]) -> Recipe:
    data = apply_overrides(base, [])
    for key, value in values.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or node.get(part) is None else None
            if node is None:
                raise ConfigError(f"search.space: '{key}' does not name a recipe key")
        node[last] = value
    data["search"] = None
    data["checkpoint"]["enabled"] = False
    return recipe_from_dict(data)


def _sampler(optuna, search, offset: int = 0):
    """`offset` (trials already in the study) reseeds a resumed search so it proposes new points."""
    seed = search.seed + offset
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        grid = {}
        for key, p in search.space.items():
            if p.type != "categorical":
                raise ConfigError(f"search.space.{key}: the grid sampler needs categorical choices for every parameter")
            grid[key] = p.choices
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def validate_space(recipe: Recipe) -> None:
    """Every searched key must produce a valid recipe at its bounds (checked before any trial runs)."""
    search = recipe.search
    if search is None or not search.space:
        raise ConfigError("search.space: nothing to search; add a 'search: {space: {optimizer.lr: {low: 1e-4, high: 1e-1, log: true}}}' section")
    base = recipe_to_dict(recipe)
    for key, p in search.space.items():
        for value in (p.choices or []) if p.type == "categorical" else (p.low, p.high):
            if p.type == "int":
                value = int(value)
            try:
                validate_recipe(trial_recipe(base, {key: value}))
            except ConfigError as exc:
                raise ConfigError(f"search.space.{key} = {value!r}: {exc}") from None


def run_search(recipe: Recipe, out_dir: str | Path, storage: str | None = None, study_name: str | None = None,
               n_trials: int | None = None):
    optuna = _optuna()
    validate_space(recipe)
    search = recipe.search
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0) if search.pruner == "median" else optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name or recipe.name or "steepest", storage=storage, sampler=_sampler(optuna, search),
                                pruner=pruner, direction=direction_of(search), load_if_exists=True)
    if study.trials:
        study.sampler = _sampler(optuna, search, offset=len(study.trials))
    base = recipe_to_dict(recipe)
    maximize = direction_of(search) == "maximize"

    def objective(trial):
        values = {key: suggest(trial, key, p) for key, p in search.space.items()}
        pruning = PruningCallback(trial, search.metric)
        summary = train(trial_recipe(base, values), out / f"trial-{trial.number:04d}", console=False, extra_callbacks=[pruning])
        if pruning.pruned:
            raise optuna.TrialPruned()
        series = [v for _, v in read_series(out / f"trial-{trial.number:04d}" / "metrics.db", search.metric) if math.isfinite(v)]
        if not series:
            return summary.get(search.metric, float("-inf") if maximize else float("inf"))
        return max(series) if maximize else min(series)

    study.optimize(objective, n_trials=n_trials or search.n_trials, timeout=search.timeout_seconds)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("search: no trial completed; widen the space or lower pruning (search.pruner: none)")
    best = trial_recipe(base, study.best_params)
    best_dict = recipe_to_dict(best)
    best_dict["checkpoint"]["enabled"] = True
    (out / "best_recipe.yaml").write_text(dump_yaml(best_dict))
    return study


def format_trials(study) -> str:
    keys = sorted({k for t in study.trials for k in t.params})
    lines = ["| trial | state | value | " + " | ".join(keys) + " |", "|" + "---|" * (3 + len(keys))]
    for t in study.trials:
        value = "-" if t.value is None else f"{t.value:.4g}"
        params = " | ".join(f"{t.params[k]:.3g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, "-")) for k in keys)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | {params} |")
    return "\n".join(lines)
