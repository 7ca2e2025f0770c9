"""Recipe -> built components. `validate_recipe` checks every component before any data is read."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from steepest.config.components import check_kwargs
from steepest.config.schema import Recipe
from steepest.errors import ConfigError, did_you_mean
from steepest.losses import LOSSES
from steepest.models import MODELS
from steepest.optim import OPTIMIZERS
from steepest.optim import create as create_optimizer
from steepest.registry import import_object
from steepest.schedules import SCHEDULES, build_schedule
from steepest.train.callbacks import CALLBACKS

DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse", "binary": "bce_with_logits", "multilabel": "bce_with_logits"}
MODEL_INJECTED = ("input_shape", "num_outputs")
MODEL_RESERVED = ("init", "dropconnect", "output_bias", "activation_checkpointing")


def _target(section, registry, key: str):
    if section.component is not None:
        return import_object(section.component, f"{key}.component"), {}
    if section.name is None:
        raise ConfigError(f"{key}: give 'name' (one of {', '.join(registry.names())}) or 'component' (an import path)")
    record = registry.get(section.name, f"{key}.name")
    return record.target, record.defaults


def optimizer_kwargs(recipe: Recipe) -> dict[str, Any]:
    return {"lr": recipe.optimizer.lr, "weight_decay": recipe.optimizer.weight_decay, **recipe.optimizer.kwargs()}


def build_optimizer(recipe: Recipe, model: nn.Module | list) -> torch.optim.Optimizer:
    section = recipe.optimizer
    try:
        if section.component is not None:
            cls = import_object(section.component, "optimizer.component")
            if recipe.finetune is not None and recipe.finetune.lr_decay is not None:
                raise ConfigError("finetune.lr_decay needs a registered optimizer (optimizer.name); give your optimizer "
                                  "parameter groups yourself")
            params = model.parameters() if isinstance(model, nn.Module) else model
            return cls(params, **optimizer_kwargs(recipe))
        kwargs = optimizer_kwargs(recipe)
        if recipe.finetune is not None and recipe.finetune.lr_decay is not None and isinstance(model, nn.Module):
            from steepest.finetune.apply import optimizer_lr_scales

            kwargs["lr_scale"] = optimizer_lr_scales(model, recipe.finetune, kwargs)
        return create_optimizer(section.name, model, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"optimizer ({section.name or section.component}): {exc}") from None


def needs_create_graph(recipe: Recipe) -> bool:
    name = recipe.optimizer.name
    return bool(name and name in OPTIMIZERS and OPTIMIZERS.get(name).flags.get("needs_create_graph"))


def loss_name(recipe: Recipe, task: str) -> str | None:
    if recipe.loss.component is not None:
        return None
    return recipe.loss.name or DEFAULT_LOSS[task]


def build_loss(recipe: Recipe, task: str):
    section = recipe.loss
    if section.component is not None:
        target = import_object(section.component, "loss.component")
    else:
        name = loss_name(recipe, task)
        record = LOSSES.get(name, "loss.name")
        fits = record.flags.get("task", "any")
        fits = fits if isinstance(fits, tuple) else (fits,)
        if "any" not in fits and task not in fits:
            raise ConfigError(f"loss.name: '{name}' is a {'/'.join(fits)} loss but the data is a {task} task; use {DEFAULT_LOSS[task]}")
        target = record.target
    kwargs = section.kwargs()
    try:
        loss = target(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss ({section.name or section.component}): {exc}") from None
    if not callable(loss):
        raise ConfigError(f"loss ({section.component}): built a {type(loss).__name__}, which is not callable")
    return loss


def build_lr_schedule(recipe: Recipe, total_steps: int, section=None):
    section = section or recipe.schedule
    if section.component is not None:
        return import_object(section.component, "schedule.component")(**section.kwargs())
    return build_schedule(section.name, total_steps, **section.kwargs())


def build_batch_transform(recipe: Recipe, num_classes: int | None, seed: int):
    """mixup/CutMix from the recipe, bound to a generator the Trainer checkpoints."""
    section = recipe.batch_transform
    if section is None:
        return None, None
    from steepest.regularize import BATCH_TRANSFORMS

    if num_classes is None:
        raise ConfigError("batch_transform: mixup/CutMix need a classification task")
    target, defaults = _target(section, BATCH_TRANSFORMS, "batch_transform")
    try:
        transform = target(**{**defaults, **section.kwargs(), "num_classes": num_classes})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"batch_transform ({section.name}): {exc}") from None
    generator = torch.Generator().manual_seed(seed + 7919)
    return (lambda x, y: transform(x, y, generator)), generator


def build_user_callbacks(recipe: Recipe) -> list:
    built = []
    for i, section in enumerate(recipe.callbacks):
        key = f"callbacks.{i}"
        target, defaults = _target(section, CALLBACKS, key)
        try:
            built.append(target(**{**defaults, **section.kwargs()}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({section.name or section.component}): {exc}") from None
    return built


def validate_recipe(recipe: Recipe) -> None:
    """Resolve every registry name and check every component's arguments (cheap: no data, no model)."""
    if recipe.data.name is not None:
        from steepest.data import DATASETS

        DATASETS.get(recipe.data.name, "data.name")
    target, _ = _target(recipe.model, MODELS, "model")
    model_kwargs = {k: v for k, v in recipe.model.kwargs().items() if k not in MODEL_RESERVED}
    check_kwargs("model", target, model_kwargs, MODEL_INJECTED)
    init = recipe.model.kwargs().get("init")
    if init is not None:
        from steepest.nn.init import INITS

        INITS.get(init if isinstance(init, str) else dict(init).get("scheme", ""), "model.init")
    if recipe.batch_transform is not None:
        from steepest.regularize import BATCH_TRANSFORMS

        target, _ = _target(recipe.batch_transform, BATCH_TRANSFORMS, "batch_transform")
        check_kwargs("batch_transform", target, recipe.batch_transform.kwargs(), ("num_classes",))
    target, _ = _target(recipe.optimizer, OPTIMIZERS, "optimizer")
    check_kwargs("optimizer", target, recipe.optimizer.kwargs(), ("params", "lr", "weight_decay"))
    build_optimizer(recipe, [nn.Parameter(torch.zeros(2, 2))])  # the optimizer's own range checks
    if recipe.schedule.component is None:
        target, _ = _target(recipe.schedule, SCHEDULES, "schedule")
        check_kwargs("schedule", target, recipe.schedule.kwargs(), ("total_steps",))
        build_lr_schedule(recipe, 100)
    for key, section in recipe.schedules.items():
        if key == "lr":
            raise ConfigError("schedules.lr: the learning rate's schedule is the 'schedule' section")
        if key not in ("beta1",) and key not in {"momentum", "weight_decay", "alpha", "rho", "eps", "dampening"}:
            raise ConfigError(f"schedules.{key}: not a schedulable hyperparameter; use momentum, beta1 or weight_decay")
        target, _ = _target(section, SCHEDULES, f"schedules.{key}")
        check_kwargs(f"schedules.{key}", target, section.kwargs(), ("total_steps",))
        build_lr_schedule(recipe, 100, section)
    if recipe.loss.name is not None:
        target, _ = _target(recipe.loss, LOSSES, "loss")
        check_kwargs("loss", target, recipe.loss.kwargs())
    for i, section in enumerate(recipe.callbacks):
        target, _ = _target(section, CALLBACKS, f"callbacks.{i}")
        check_kwargs(f"callbacks.{i}", target, section.kwargs())
    es = recipe.trainer.early_stopping
    if es is not None and not es.monitor.startswith("val_"):
        raise ConfigError(f"trainer.early_stopping.monitor: '{es.monitor}' is not a validation metric;{did_you_mean(es.monitor, ['val_loss', 'val_accuracy'])} use val_loss, val_accuracy, val_macro_f1, val_r2, ...")
