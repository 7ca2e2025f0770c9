"""The tuning procedures of the practitioner's method (Deep Learning Systems §4.5.4), stage by stage:
`steepest search RECIPE --procedure new|established`.

A new topology (goal: a low validation error):
    batch_size    a relatively small batch: 32 (32 exactly with BatchNorm layers)
    lr            the LR range test (Smith 2017): the largest lr the training loss still falls at
                  (the "valley" of `lr_finder.range_test`, the one-run form of testing 10^{-5..0})
    weight_decay  lambda in 10^{-6, -5, -4, -3}, none, and the recipe's own
    schedule      a constant lr against "train until flat, then lr / 10, again" (reduce_on_plateau,
                  factor 0.1), a constant lr switching to a cyclic lr for the last 20% (the
                  method's option), and the recipe's own schedule
    optimizer     once the design is set, the method's optimizer against the recipe's: Ranger
                  (RAdam + Lookahead) for small and medium batches, RangerLARS from batch 1024
An established topology (goal: less training time at its known validation error):
    batch_size    the largest batch of the perfect-scaling regime, estimated by the gradient noise
                  scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), the lr scaled linearly
    optimizer     as above, at that batch
    schedule      warmup from lr/20 over the first 10% of training, then polynomial decay
                  lr (1 - t/T)^p (p = 1, 2), with or without a cyclic lr over the last 20% (two
                  triangles between a tenth of the lr reached there and that lr), against the
                  recipe's own schedule
    weight_decay  as above

Each stage starts from the recipe the previous one wrote its choice into. Stages that compare
candidates train each one as a short run of the recipe (`steepest.run.train`, the trial budget
`trainer.max_epochs` / `max_steps`, no checkpoints) in OUT/<k>-<stage>/<candidate>, judged by a
validation metric (the weights each run keeps); the candidate the stage started from (the
incumbent, listed first) stays unless another beats it by more than `tolerance` (relative).
OUT gets procedure.json, procedure.md and final_recipe.yaml (the recipe's own budget, the chosen
values: what `steepest train` takes).

    >>> [stage for stage, _ in PROCEDURES["established"]]
    ['batch_size', 'optimizer', 'schedule', 'weight_decay']
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steepest.config import Recipe, recipe_from_dict, recipe_to_dict
from steepest.config.build import build_model_from_recipe
from steepest.config.validate import known_task, validate_recipe
from steepest.config.yaml_io import dump_yaml
from steepest.data import load_data
from steepest.errors import ConfigError, TrainingError
from steepest.optim import OPTIMIZERS
from steepest.run import build_run, train
from steepest.training.checkpoint import atomic_write_bytes
from steepest.training.metrics import metric_mode, metric_names
from steepest.tune.batch_size import estimate_noise_scale, noise_scale_result, sampler_from
from steepest.tune.lr_finder import range_test

SMALL_BATCH = 32  # the new-topology batch; also the smallest BatchNorm works well with
REFERENCE_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3)  # the lambda values the method says to try
NOISE_WARMUP_STEPS = 50  # steps at the recipe's lr before the noise scale is measured (it is atypical at init)
NOISE_ITERATIONS = 30  # gradient pairs averaged (as `steepest batch-size`)
NOISE_BATCHES = (16, 512)  # the small and big probe batches (the big one at most the training split)


@dataclass
class Settings:
    """The budget and the rule every stage shares (the command's flags)."""

    trial_epochs: int | None = None  # per trial; None (and no max_steps): a quarter of the recipe's budget
    max_steps: int | None = None  # per trial
    metric: str = "val_loss"
    tolerance: float = 0.01  # the incumbent stays unless beaten by more than this (relative)
    lr_steps: int = 100  # steps of the LR range test
    weight_decays: tuple[float, ...] = REFERENCE_DECAYS
    schedules: tuple[str, ...] | None = None  # candidate names (None: all of the procedure's)
    optimizers: tuple[str, ...] | None = None  # "recipe", "auto" (Ranger or RangerLARS by the batch) or optimizer names
    console: bool = False  # a line per trial on stderr

    def check(self) -> None:
        for flag, value in (("--trial-epochs", self.trial_epochs), ("--max-steps", self.max_steps), ("--lr-steps", self.lr_steps)):
            if value is not None and value < 1:
                raise ConfigError(f"search {flag}: give a whole number >= 1 (got {value})")
        if self.lr_steps < 10:
            raise ConfigError(f"search --lr-steps: the range test needs at least 10 steps (got {self.lr_steps})")
        if not self.metric.startswith("val_"):
            raise ConfigError(f"search --metric {self.metric}: give a validation metric (val_loss, val_accuracy, ...)")
        if not (0 <= self.tolerance < 1):
            raise ConfigError(f"search --tolerance: give a fraction in [0, 1) (got {self.tolerance})")
        if self.optimizers is not None:
            unknown = [n for n in self.optimizers if n not in ("recipe", "auto") and n not in OPTIMIZERS]
            if unknown or not self.optimizers:
                bad = unknown[0] if unknown else ""
                close = difflib.get_close_matches(bad.lower(), list(OPTIMIZERS), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(f"search --optimizers: unknown optimizer '{bad}'; {hint}give recipe, auto (Ranger or RangerLARS "
                                  f"by the batch) or any of {', '.join(sorted(OPTIMIZERS))}")
        if not self.weight_decays or any(not (math.isfinite(w) and w >= 0) for w in self.weight_decays):
            raise ConfigError(f"search --weight-decays: give finite values >= 0 (got {', '.join(map(str, self.weight_decays)) or 'none'})")


@dataclass
class Stage:
    """What one stage tried and chose; `recipe` is the recipe with its choice written in."""

    name: str
    recipe: Recipe
    chosen: Any
    sets: dict[str, Any]
    why: str
    tried: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def record(self, index: int, starts_from: dict, seconds: float) -> dict:
        return {"stage": self.name, "index": index, "starts_from": starts_from, "tried": self.tried, "chosen": self.chosen,
                "sets": self.sets, "why": self.why, **({"details": self.details} if self.details else {}), "seconds": round(seconds, 2)}


# -- recipes ----------------------------------------------------------------------------------------
def edited(recipe: Recipe, change: Callable[[dict], None]) -> Recipe:
    """A copy of `recipe` with `change(data)` applied to its plain data (validated again)."""
    data = recipe_to_dict(recipe)
    change(data)
    return recipe_from_dict(data)


def with_keys(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """A copy with dotted keys set, e.g. {"optimizer.lr": 1e-3}."""
    def change(data: dict) -> None:
        for key, value in values.items():
            *parents, last = key.split(".")
            node = data
            for part in parents:
                node = node[part]
            node[last] = value
    return edited(recipe, change)


def trial_budget(recipe: Recipe, settings: Settings) -> dict[str, Any]:
    """The trainer keys of a trial: the flags, or a quarter of the recipe's own budget."""
    if settings.trial_epochs is None and settings.max_steps is None:
        t = recipe.trainer
        return {"max_epochs": max(1, t.max_epochs // 4)} if t.max_epochs else {"max_steps": max(1, t.max_steps // 4)}
    budget: dict[str, Any] = {}
    if settings.trial_epochs is not None:
        budget["max_epochs"] = settings.trial_epochs
    if settings.max_steps is not None:
        budget["max_steps"] = settings.max_steps
        budget.setdefault("max_epochs", recipe.trainer.max_epochs)
    return budget


def trial_recipe(recipe: Recipe, settings: Settings) -> Recipe:
    """The recipe shrunk to the trial budget: its epochs or steps, a reduce_on_plateau patience in
    proportion to the evaluations left, no checkpoints."""
    def change(data: dict) -> None:
        full = _evaluations(data["trainer"])
        data["trainer"].update(trial_budget(recipe, settings))
        for callback in data["callbacks"]:
            if callback.get("name") == "reduce_on_plateau" and "patience" in callback:
                callback["patience"] = max(1, round(callback["patience"] * _evaluations(data["trainer"]) / full))
        data["checkpoint"]["enabled"] = False
        data["search"] = None
    return edited(recipe, change)


def settings_of(recipe: Recipe) -> dict[str, Any]:
    """The values the stages choose, as the recipe holds them (each stage's starting point)."""
    return {"data.batch_size": recipe.data.batch_size, "optimizer": recipe.optimizer.name or recipe.optimizer.component,
            "optimizer.lr": recipe.optimizer.lr, "optimizer.weight_decay": recipe.optimizer.weight_decay,
            "schedule": schedule_label(recipe)}


def schedule_label(recipe: Recipe) -> str:
    s = recipe.schedule
    name = s.name or s.component or "constant"
    if name == "join":
        name = " then ".join(f"{p['name']}" + (f"(power={p['power']:g})" if "power" in p else "") for p in s.kwargs()["parts"])
    if any(c.name == "reduce_on_plateau" for c in recipe.callbacks):
        name += " + lr/10 on plateau"
    return name


def _evaluations(trainer: dict) -> int:
    """About how many validation passes a run of these trainer keys makes (8 when unknown)."""
    if trainer.get("max_epochs") and trainer.get("eval_every_n_epochs"):
        return max(1, trainer["max_epochs"] // trainer["eval_every_n_epochs"])
    if trainer.get("max_steps") and trainer.get("eval_every_n_steps"):
        return max(1, trainer["max_steps"] // trainer["eval_every_n_steps"])
    return 8


def with_schedule(recipe: Recipe, schedule: dict, plateau: bool) -> Recipe:
    """`schedule` for the lr, with or without reduce_on_plateau (factor 0.1; patience an eighth
    of the recipe's evaluations, at least 1), any reduce_on_plateau of the recipe's replaced."""
    patience = max(1, _evaluations(recipe_to_dict(recipe)["trainer"]) // 8)

    def change(data: dict) -> None:
        data["schedule"] = dict(schedule)
        callbacks = [c for c in data["callbacks"] if c.get("name") != "reduce_on_plateau"]
        if plateau:
            callbacks.append({"name": "reduce_on_plateau", "monitor": "val_loss", "factor": 0.1, "patience": patience})
        data["callbacks"] = callbacks
    return edited(recipe, change)


def warmup_then_polynomial(power: float) -> dict:
    """lr/20 -> lr linearly over the first 10% of training, then lr (1 - t/T)^power."""
    return {"name": "join", "parts": [{"name": "warmup", "warmup_fraction": 1.0}, {"name": "polynomial", "power": power}],
            "boundaries": [0.1]}


TAIL = 0.2  # the last fifth of training: where the method suggests a cyclic lr
TAIL_CYCLES = 2  # triangles in the tail, each between a tenth of the lr reached there and that lr


def cyclic_tail(peak: float) -> dict:
    """The tail's cyclic lr (Smith 2017): triangles between peak/10 and `peak` (multipliers of the
    optimizer's lr), TAIL_CYCLES of them over the tail's span."""
    half = 1 / (2 * TAIL_CYCLES)
    return {"name": "cyclic", "base_ratio": peak / 10, "peak_ratio": peak, "step_size_up": half, "step_size_down": half}


def constant_then_cyclic() -> dict:
    """The new-topology method's option: a constant lr, then for the last TAIL of training a cyclic lr."""
    return {"name": "join", "parts": [{"name": "constant"}, cyclic_tail(1.0)], "boundaries": [1 - TAIL]}


def warmup_polynomial_then_cyclic(power: float) -> dict:
    """The established-topology schedule with a cyclic tail (§4.5.4: a cyclic lr over the last ~20%
    of the epochs): warmup over 10%, polynomial decay to the lr `warmup_then_polynomial(power)`
    reaches at 1 - TAIL of training ((1 - 0.7/0.9)^power of the peak), then triangles below it."""
    reached = (1 - (1 - TAIL - 0.1) / 0.9) ** power
    return {"name": "join", "boundaries": [0.1, 1 - TAIL],
            "parts": [{"name": "warmup", "warmup_fraction": 1.0}, {"name": "polynomial", "power": power, "end_ratio": reached},
                      cyclic_tail(reached)]}


SCHEDULE_CANDIDATES = {
    "new": {"constant": ({"name": "constant"}, False), "plateau": ({"name": "constant"}, True),
            "constant_cyclic": (constant_then_cyclic(), False)},
    "established": {"warmup_poly1": (warmup_then_polynomial(1.0), False), "warmup_poly2": (warmup_then_polynomial(2.0), False),
                    "warmup_poly1_cyclic": (warmup_polynomial_then_cyclic(1.0), False),
                    "warmup_poly2_cyclic": (warmup_polynomial_then_cyclic(2.0), False)},
}


# -- trials -----------------------------------------------------------------------------------------
def run_trial(recipe: Recipe, settings: Settings, run_dir: Path, candidate: str) -> dict:
    """One short run of `recipe` at the trial budget; its score is `settings.metric` of the weights
    it keeps (None when not finite or the run stopped on a non-finite loss)."""
    started = time.time()
    row: dict[str, Any] = {"candidate": candidate, "run_dir": str(run_dir)}
    try:
        summary = train(trial_recipe(recipe, settings), run_dir, console=False)
    except TrainingError as exc:  # a non-finite loss: this candidate fails, the stage goes on
        summary = {settings.metric: math.nan, "error": str(exc)}
    if settings.metric not in summary:
        found = ", ".join(k for k in summary if k.startswith("val_")) or "none"
        raise ConfigError(f"search --metric {settings.metric}: the runs report no such metric (they report: {found})")
    value = float(summary[settings.metric])
    row.update(score=value if math.isfinite(value) else None, steps=summary.get("steps"),
               **{k: v for k, v in summary.items() if k.startswith("val_") and isinstance(v, float) or k == "error"},
               seconds=round(time.time() - started, 2))
    if settings.console:
        shown = "failed" if row["score"] is None else f"{settings.metric} {row['score']:.4g}"
        print(f"  {candidate}: {shown} ({row['seconds']:.1f} s)", file=sys.stderr)
    return row


def choose(tried: list[dict], metric: str, tolerance: float) -> dict:
    """The best-scoring trial, unless the incumbent (tried[0]) is within `tolerance` (relative) of it.

    >>> rows = [{"candidate": "a", "score": 0.50}, {"candidate": "b", "score": 0.497}, {"candidate": "c", "score": None}]
    >>> choose(rows, "val_loss", 0.01)["candidate"], choose(rows, "val_loss", 0.0)["candidate"]
    ('a', 'b')
    """
    scored = [t for t in tried if t.get("score") is not None]
    if not scored:
        raise ConfigError(f"search --procedure: no trial gave a finite {metric}; lower the lr or give the trials more steps")
    sign = 1.0 if metric_mode(metric) == "min" else -1.0
    best = min(scored, key=lambda t: sign * t["score"])
    incumbent = tried[0]
    if incumbent.get("score") is not None and sign * (incumbent["score"] - best["score"]) <= tolerance * abs(best["score"]):
        return incumbent
    return best


def compare(recipes: dict[str, Recipe], settings: Settings, folder: Path) -> tuple[str, list[dict], str]:
    """Train each candidate (the incumbent first): the chosen name, every trial's row, and why."""
    unique: dict[str, Recipe] = {}
    for name, r in recipes.items():
        validate_recipe(r)  # every candidate checked before the first one trains
        if all(r != u for u in unique.values()):  # the recipe's own may be one of the candidates
            unique[name] = r
    tried = [run_trial(r, settings, folder / name, name) for name, r in unique.items()]
    chosen = choose(tried, settings.metric, settings.tolerance)
    best = choose(tried, settings.metric, 0.0)
    if chosen is not best:
        why = (f"kept the incumbent {chosen['candidate']}: the best, {best['candidate']} ({settings.metric} {best['score']:.4g} "
               f"vs {chosen['score']:.4g}), is within {settings.tolerance:.0%} of it")
    else:
        why = f"the best {settings.metric} of {len(tried)} short runs"
    return chosen["candidate"], tried, why


# -- stages -----------------------------------------------------------------------------------------
def has_batchnorm(recipe: Recipe) -> bool:
    data = load_data(recipe.data, recipe.trainer.seed)
    model = build_model_from_recipe(recipe, data.info.input_shape, data.info.num_outputs, data.info.tabular)
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def small_batch(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
    """(1) A relatively small batch: 32, or the recipe's when smaller (without BatchNorm)."""
    batch = recipe.data.batch_size
    bn = has_batchnorm(recipe)
    chosen = SMALL_BATCH if bn or batch == "full" or batch > SMALL_BATCH else batch
    why = ("BatchNorm layers: 32, the smallest batch they work well with" if bn
           else f"a relatively small batch (at most {SMALL_BATCH})")
    return Stage("batch_size", with_keys(recipe, {"data.batch_size": chosen}), chosen, {"data.batch_size": chosen}, why)


def lr_range_test(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
    """(2) The LR range test at the chosen batch: the valley suggestion (a large lr at which the
    loss still falls), written to lr_finder.json."""
    run = build_run(recipe, None, console=False)
    result = range_test(run.trainer, num_steps=settings.lr_steps)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lr_finder.json").write_text(json.dumps(result.to_dict(), indent=2))
    lr = float(f"{result.suggested_lr:.3g}")
    tried = [{"candidate": name, "lr": value} for name, value in result.suggestions.items()]
    why = (f"range test {result.lrs[0]:.0e}..{result.lrs[-1]:.2g} over {len(result.lrs)} steps"
           + (" (stopped where the loss diverged)" if result.stopped_early else "") + f"; {result.chosen} suggestion")
    return Stage("lr", with_keys(recipe, {"optimizer.lr": lr}), lr, {"optimizer.lr": lr}, why, tried)


def _warm_up(trainer, steps: int) -> None:
    trainer.model.train()
    done, epoch = 0, 0
    while done < steps:
        for batches in trainer.loader.steps(epoch, trainer.options.accumulate):
            trainer.engine.train_step(batches)
            done += 1
            if done == steps:
                return
        epoch += 1


def critical_batch(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
    """(1) The gradient noise scale after a short warm-up: the batch nearest B_simple (a power of
    two, at most the training split), the lr scaled linearly with it (perfect scaling)."""
    run = build_run(recipe, None, console=False)
    trainer = run.trainer
    loader = trainer.loader
    if not hasattr(loader, "x"):
        raise ConfigError("search --procedure established: the noise scale needs data held in memory; "
                          "use the new procedure or set data.batch_size yourself (steepest batch-size)")
    n = loader.num_samples
    if n < 2 * NOISE_BATCHES[0]:
        raise ConfigError(f"search --procedure established: the training split has {n} samples; the noise scale needs at least {2 * NOISE_BATCHES[0]}")
    _warm_up(trainer, NOISE_WARMUP_STEPS)
    model = trainer.unwrapped_model.eval()  # no dropout draws
    batch = loader.batch_size
    est = estimate_noise_scale(model, trainer.loss_fn, sampler_from(loader.x, loader.y), NOISE_BATCHES[0], min(NOISE_BATCHES[1], n),
                               NOISE_ITERATIONS, seed=recipe.trainer.seed, batch_size=batch)
    result = noise_scale_result(est.trace_sigma, est.grad_sq, batch, recipe.optimizer.lr, max_batch=n)
    sets: dict[str, Any] = {"data.batch_size": result.recommended_batch}
    if result.recommended_lr is not None:  # None: an optimizer of the user's own, lr unknown
        sets["optimizer.lr"] = float(f"{result.recommended_lr:.3g}")
    why = (f"B_simple {result.b_simple:.1f} after {NOISE_WARMUP_STEPS} steps; batch {batch} was in {result.regime.split(' (')[0]}"
           + (f"; lr x{result.recommended_batch / batch:g} (linear scaling)" if "optimizer.lr" in sets else ""))
    return Stage("batch_size", with_keys(recipe, sets), result.recommended_batch, sets, why, details=result.to_dict())


def decay_candidates(recipe: Recipe, settings: Settings) -> list[float]:
    own = recipe.optimizer.weight_decay or 0.0
    values = [own, 0.0, *settings.weight_decays]
    return [v for i, v in enumerate(values) if v not in values[:i]]


def weight_decay(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
    """Weight decay: the recipe's own (the incumbent), none and the method's 10^{-6..-3}."""
    recipes = {f"wd-{v:g}": with_keys(recipe, {"optimizer.weight_decay": v}) for v in decay_candidates(recipe, settings)}
    name, tried, why = compare(recipes, settings, folder)
    chosen = recipes[name].optimizer.weight_decay
    return Stage("weight_decay", recipes[name], chosen, {"optimizer.weight_decay": chosen}, why, tried)


def schedule_names(kind: str, settings: Settings) -> tuple[str, ...]:
    """The schedule candidates the stage compares: "recipe" (the recipe's own, the incumbent: always
    tried, first) and the named ones (all of the procedure's table by default)."""
    table = SCHEDULE_CANDIDATES[kind]
    names = ("recipe", *(settings.schedules or table))  # the recipe's own always, first: the incumbent
    unknown = [n for n in names if n != "recipe" and n not in table]
    if unknown:
        raise ConfigError(f"search --schedules: unknown candidate '{unknown[0]}' for the {kind} procedure; valid: recipe, {', '.join(table)}")
    return tuple(dict.fromkeys(names))


def schedule_stage(kind: str) -> Callable[[Recipe, Settings, Path], Stage]:
    def stage(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
        table, names = SCHEDULE_CANDIDATES[kind], schedule_names(kind, settings)
        recipes = {n: recipe if n == "recipe" else with_schedule(recipe, *table[n]) for n in names}
        name, tried, why = compare(recipes, settings, folder)
        chosen = recipes[name]
        data = recipe_to_dict(chosen)
        return Stage("schedule", chosen, schedule_label(chosen), {"schedule": data["schedule"], "callbacks": data["callbacks"]}, why, tried)
    stage.__doc__ = f"The lr schedule ({kind} topology): the recipe's own against {', '.join(SCHEDULE_CANDIDATES[kind])}."
    return stage


LARGE_BATCH = 1024  # from here on the method's optimizer is RangerLARS (LARS' regime: You et al. 2017 train at 1k-32k)


def adam_lr(name: str) -> bool:
    """Whether optimizer `name` takes its lr on Adam's (and Ranger's) scale, a step of about lr per
    weight: its registry row's `adam_lr` flag (steepest.optim._registry); False for a name that is
    not registered."""
    return name in OPTIMIZERS and bool(OPTIMIZERS.get(name).flags["adam_lr"])


def lr_carries(own: str, candidate: str, own_lr: float | None) -> bool:
    """Whether the recipe's lr (of optimizer `own`) is a sensible start for `candidate`: both take
    their lr on Adam's scale. Otherwise the optimizer stage measures the candidate's own lr."""
    return own_lr is not None and adam_lr(own) and adam_lr(candidate)


def method_optimizer(batch: int | str) -> str:
    """§4.5.4's recommendation: Ranger (RAdam + Lookahead) for small and medium batches, RangerLARS
    (with the LARS trust ratio) for large ones (Wright 2019)."""
    return "rangerlars" if batch == "full" or int(batch) >= LARGE_BATCH else "ranger"


def optimizer_candidates(recipe: Recipe, settings: Settings) -> dict[str, Recipe]:
    """The recipe's own optimizer (the incumbent: always tried, first, whatever `settings.optimizers`
    lists) and the method's ("auto": Ranger or RangerLARS by the batch; or the names in
    `settings.optimizers`; a name equal to the recipe's optimizer adds nothing). A candidate keeps the recipe's lr when both
    the recipe's optimizer and the candidate take their lr on Adam's scale (`adam_lr`: Ranger's scale
    too), else the candidate's own default (which `optimizer_stage` replaces by a range test's
    suggestion); the weight decay carries over."""
    own = recipe.optimizer
    names = settings.optimizers or ("recipe", "auto")
    out: dict[str, Recipe] = {"recipe": recipe}  # always tried, and first: the incumbent
    for name in names:
        chosen = method_optimizer(recipe.data.batch_size) if name == "auto" else name
        if name == "recipe" or chosen == own.name:  # the recipe's own optimizer is the incumbent already
            continue
        section: dict[str, Any] = {"name": chosen, "weight_decay": own.weight_decay, "scale_lr": own.scale_lr,
                                   "decay_1d": own.decay_1d}
        if lr_carries(own.name, chosen, own.lr):
            section["lr"] = own.lr
        out.setdefault(chosen, edited(recipe, lambda d, section=section: d.update(optimizer=section)))
    return out


def optimizer_stage(recipe: Recipe, settings: Settings, folder: Path) -> Stage:
    """The optimizer, explored once the rest is set (§4.5.4: advanced optimizers after the design):
    the recipe's own against Ranger (batch < LARGE_BATCH) or RangerLARS. A candidate whose lr is on
    another scale than the recipe's optimizer (SGD, Lion, LARS vs Adam) starts from the valley of
    its own LR range test (range_tests/NAME/lr_finder.json), not from its registry default."""
    recipes = optimizer_candidates(recipe, settings)
    measured: dict[str, float] = {}
    for name, candidate in list(recipes.items()):  # a candidate on another lr scale gets its own range test
        if name != "recipe" and not lr_carries(recipe.optimizer.name, candidate.optimizer.name, recipe.optimizer.lr):
            test = lr_range_test(candidate, settings, folder / "range_tests" / name)
            recipes[name], measured[name] = test.recipe, test.chosen
    name, tried, why = compare(recipes, settings, folder)
    for row in tried:
        row["lr"] = recipes[row["candidate"]].optimizer.lr
        if row["candidate"] in measured:
            row["lr_from"] = "range test"
    chosen = recipes[name]
    section = recipe_to_dict(chosen)["optimizer"]
    return Stage("optimizer", chosen, chosen.optimizer.name, {"optimizer": section}, why, tried)


PROCEDURES: dict[str, tuple[tuple[str, Callable[[Recipe, Settings, Path], Stage]], ...]] = {
    "new": (("batch_size", small_batch), ("lr", lr_range_test), ("weight_decay", weight_decay), ("schedule", schedule_stage("new")),
            ("optimizer", optimizer_stage)),
    "established": (("batch_size", critical_batch), ("optimizer", optimizer_stage), ("schedule", schedule_stage("established")),
                    ("weight_decay", weight_decay)),
}


def compact(recipe: Recipe) -> dict:
    """The recipe's plain data without the keys at their defaults (the full data when that would
    not read back as the same recipe)."""
    data = recipe.model_dump(mode="json", exclude_defaults=True)
    return data if recipe_from_dict(data) == recipe else recipe_to_dict(recipe)


# -- the procedure ----------------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Every run ends with gc.collect(), a full pass over the ~400k objects torch and steepest have
    made by then (0.3-0.4 s of CPU per trial, measured); frozen, only the trials' own are scanned."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_procedure(recipe: Recipe, kind: str, out_dir: str | Path, settings: Settings | None = None) -> dict:
    """Run the `kind` procedure ("new" or "established") on `recipe`; returns the report (also
    OUT/procedure.json, with OUT/procedure.md and OUT/final_recipe.yaml)."""
    if kind not in PROCEDURES:
        raise ConfigError(f"search --procedure: unknown procedure '{kind}'; valid: {', '.join(PROCEDURES)}")
    settings = settings or Settings()
    settings.check()
    schedule_names(kind, settings)
    validate_recipe(recipe)
    task = known_task(recipe)
    if task is not None:  # a metric the runs will not report is said now, not after the first stages have trained
        names = [f"val_{m}" for m in metric_names(task)]
        two_classes = " (and val_pr_auc with two classes)" if task in ("classification", "binary") else ""
        if settings.metric not in names and not (two_classes and settings.metric == "val_pr_auc"):  # the class count is read later
            raise ConfigError(f"search --metric {settings.metric}: {task} runs report {', '.join(names)}{two_classes}")
    out = Path(out_dir)
    if (out / "procedure.json").exists():
        raise ConfigError(f"{out} already holds a tuning procedure; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    started, stages = time.time(), []
    current = edited(recipe, lambda d: d.update(search=None))
    with frozen_heap():
        for index, (name, stage) in enumerate(PROCEDURES[kind], 1):
            if settings.console:
                print(f"stage {index}/{len(PROCEDURES[kind])}: {name}", file=sys.stderr)
            begun, starts_from = time.time(), settings_of(current)
            result = stage(current, settings, out / f"{index}-{name}")
            stages.append(result.record(index, starts_from, time.time() - begun))
            current = result.recipe
    atomic_write_bytes(out / "final_recipe.yaml", dump_yaml(compact(current)).encode())
    report = {"procedure": kind, "recipe": recipe.name, "metric": settings.metric, "trial_budget": trial_budget(recipe, settings),
              "tolerance": settings.tolerance, "stages": stages, "final": settings_of(current),
              "final_recipe": str(out / "final_recipe.yaml"), "seconds": round(time.time() - started, 1)}
    (out / "procedure.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "procedure.md").write_text(format_report(report) + "\n")
    return report


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_report(report: dict) -> str:
    """procedure.md: a summary table of the stages, then what each one tried."""
    lines = [f"# Tuning procedure `{report['procedure']}` for {report['recipe']} (Deep Learning Systems §4.5.4)", "",
             f"Trials: {', '.join(f'{k} {v}' for k, v in report['trial_budget'].items())}; metric {report['metric']}; "
             f"the incumbent stays within {report['tolerance']:.0%}. Total {report['seconds']:.1f} s.", "",
             "| stage | chose | sets | seconds |", "|---|---|---|---|"]
    for s in report["stages"]:
        sets = (", ".join(f"{k}={_cell(v)}" for k, v in s["sets"].items() if k not in ("schedule", "callbacks", "optimizer"))
                or f"{s['stage']}: {s['chosen']}")
        lines.append(f"| {s['index']}. {s['stage']} | {_cell(s['chosen'])} | {sets} | {s['seconds']:.1f} |")
    for s in report["stages"]:
        start = ", ".join(f"{k} {_cell(v)}" for k, v in s["starts_from"].items())
        lines += ["", f"## {s['index']}. {s['stage']}: {_cell(s['chosen'])}", "", f"Starts from: {start}.", f"Why: {s['why']}."]
        if s["tried"]:
            hidden = ("run_dir", "score")  # the score is the metric's own column
            keys = [k for t in s["tried"] for k in t if k not in hidden]
            keys = [k for i, k in enumerate(keys) if k not in keys[:i]]
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(t.get(k)) for k in keys) + " |" for t in s["tried"]]
    return "\n".join(lines)
