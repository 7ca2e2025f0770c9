"""Check a whole recipe before any data is read or anything is built: every registry name exists,
every component's keys fit its signature (types from its hints), and the hyperparameters every
optimizer shares are in range. Errors are one line naming the key (see `steepest.config.load`).

    >>> from steepest.config import load_recipe
    >>> validate_recipe(load_recipe("digits_mlp"))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from steepest.config.build import SCHEDULABLE, component_target
from steepest.config.components import check_kwargs
from steepest.config.schema import Recipe
from steepest.data import DATASETS
from steepest.errors import ConfigError, did_you_mean
from steepest.losses import LOSSES
from steepest.models import MODELS
from steepest.models.build import INJECTED as MODEL_INJECTED
from steepest.models.build import RESERVED as MODEL_RESERVED
from steepest.nn.init import INITS
from steepest.optim import OPTIMIZERS
from steepest.regularize import BATCH_TRANSFORMS
from steepest.schedules import SCHEDULES
from steepest.training.callbacks import CALLBACKS


def _in_unit_interval(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in value)


# The meaning these keys have in every optimizer that takes them (torch.optim's own checks).
OPTIMIZER_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "momentum": (lambda v: v >= 0, ">= 0"),
    "dampening": (lambda v: v >= 0, ">= 0"),
    "eps": (lambda v: v >= 0, ">= 0"),
    "betas": (_in_unit_interval, "two numbers in [0, 1)"),
}


def _check_optimizer_ranges(kwargs: dict[str, Any]) -> None:
    for key, value in kwargs.items():
        rule = OPTIMIZER_RANGES.get(key)
        if rule is None:
            continue
        ok, what = rule
        try:
            fine = ok(value) and (not isinstance(value, float) or math.isfinite(value))
        except TypeError:
            fine = False
        if not fine:
            raise ConfigError(f"optimizer.{key}: must be {what} (got {value!r})")


def validate_recipe(recipe: Recipe) -> None:
    """Resolve every registry name and check every component's arguments (no data, no model, no
    optimizer is built). Raises ConfigError naming the first wrong key."""
    if recipe.data.name is not None:
        DATASETS.get(recipe.data.name, "data.name")
    target, _ = component_target(recipe.model, MODELS, "model")
    model_kwargs = {k: v for k, v in recipe.model.kwargs().items() if k not in MODEL_RESERVED}
    check_kwargs("model", target, model_kwargs, MODEL_INJECTED)
    init = recipe.model.kwargs().get("init")
    if init is not None:
        INITS.get(init if isinstance(init, str) else dict(init).get("scheme", ""), "model.init")
    if recipe.batch_transform is not None:
        target, _ = component_target(recipe.batch_transform, BATCH_TRANSFORMS, "batch_transform")
        check_kwargs("batch_transform", target, recipe.batch_transform.kwargs(), ("num_classes",))
    target, _ = component_target(recipe.optimizer, OPTIMIZERS, "optimizer")
    check_kwargs("optimizer", target, recipe.optimizer.kwargs(), ("params", "lr", "weight_decay"))
    _check_optimizer_ranges(recipe.optimizer.kwargs())
    if recipe.schedule.component is None:
        target, _ = component_target(recipe.schedule, SCHEDULES, "schedule")
        check_kwargs("schedule", target, recipe.schedule.kwargs(), ("total_steps",))
    for key, section in recipe.schedules.items():
        if key == "lr":
            raise ConfigError("schedules.lr: the learning rate's schedule is the 'schedule' section")
        if key not in SCHEDULABLE:
            raise ConfigError(f"schedules.{key}: not a schedulable hyperparameter;{did_you_mean(key, SCHEDULABLE)} use "
                              f"{', '.join(SCHEDULABLE)}")
        if section.component is None:
            target, _ = component_target(section, SCHEDULES, f"schedules.{key}")
            check_kwargs(f"schedules.{key}", target, section.kwargs(), ("total_steps",))
    if recipe.loss.name is not None:
        target, _ = component_target(recipe.loss, LOSSES, "loss")
        check_kwargs("loss", target, recipe.loss.kwargs())
    for i, section in enumerate(recipe.callbacks):
        target, _ = component_target(section, CALLBACKS, f"callbacks.{i}")
        check_kwargs(f"callbacks.{i}", target, section.kwargs())
    es = recipe.trainer.early_stopping
    if es is not None and not es.monitor.startswith("val_"):
        raise ConfigError(f"trainer.early_stopping.monitor: '{es.monitor}' is not a validation metric;{did_you_mean(es.monitor, ['val_loss', 'val_accuracy'])} use val_loss, val_accuracy, val_macro_f1, val_r2, ...")
