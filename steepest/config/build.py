"""Validated recipe -> built components: optimizer, loss, loader, the Trainer's options, schedules,
batch transforms (with their generators) and the recipe's callbacks. `build_components` makes all
of them for a model and its data in one call (what `steepest.run` does once per run); the single
builders turn a component's own errors into one-line ConfigErrors and serve the doctor and the
tuners directly.

    >>> from steepest.config import load_recipe
    >>> recipe = load_recipe("digits_mlp")
    >>> build_step_schedules(recipe, total_steps=100)["lr"](0) < 1
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import IterableDataset

from steepest.config.components import check_kwargs
from steepest.config.schema import Component, Recipe
from steepest.data import DataBundle, DatasetSplit, DeviceLoader, Split
from steepest.data.checks import batch_checker
from steepest.data.containers import split_size
from steepest.data.stream import IterableLoader, SampleLoader
from steepest.errors import ConfigError, did_you_mean
from steepest.finetune.apply import optimizer_lr_scales
from steepest.losses import LOSSES
from steepest.models import build_model
from steepest.optim import OPTIMIZERS
from steepest.optim import create as create_optimizer
from steepest.registry import Registry, accepted_arguments, import_object
from steepest.regularize import BATCH_TRANSFORMS
from steepest.schedules import build_schedule
from steepest.training.callbacks import CALLBACKS, EarlyStopping, Evaluate
from steepest.training.distributed import DistContext
from steepest.training.events import Callback
from steepest.training.state import RandomState
from steepest.training.trainer import TrainerOptions, step_budget

# Seed offsets of a run's own generators (fixed: they are part of what makes a run repeat).
MIXUP_SEED, AUGMENT_SEED = 7919, 104729

DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse", "binary": "bce_with_logits", "multilabel": "bce_with_logits",
                "metric": "triplet", "language_modeling": "next_token"}
EMBEDDING_DIM = 32  # the embedding width of a metric-learning run unless model.embedding_dim says


def metric_learning(recipe: Recipe) -> bool:
    """Whether the recipe's loss is a metric-learning one (contrastive, triplet): the model then
    outputs embeddings of `model.embedding_dim` and the run's task is "metric" (recall@k)."""
    name = recipe.loss.name
    return bool(name and name in LOSSES and LOSSES.get(name).flags.get("task") == "metric")


def component_target(section: Component, registry: Registry, key: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """What a component section names: a registered record's target and defaults, or the object at
    its import path (no defaults)."""
    if section.component is not None:
        return import_object(section.component, f"{key}.component"), {}
    if section.name is None:
        raise ConfigError(f"{key}: give 'name' (one of {', '.join(registry.names())}) or 'component' (an import path)")
    record = registry.get(section.name, f"{key}.name")
    return record.target, record.defaults


def batch_size_for(recipe: Recipe, n_train: int | None) -> int:
    """The recipe's training batch size; `data.batch_size: full` is the whole training split (which
    a stream of unknown length, `n_train` None, cannot have)."""
    if recipe.data.batch_size != "full":
        return recipe.data.batch_size
    if n_train is None:
        raise ConfigError("data.batch_size: 'full' needs a training split of known length; this stream has none, give a number")
    return n_train


def build_model_from_recipe(recipe: Recipe, input_shape: tuple[int, ...], num_outputs: int,
                            tabular: dict[str, Any] | None = None) -> nn.Module:
    """The recipe's model for data of `input_shape` with `num_outputs` outputs and the CSV encoder
    `tabular` (`DataInfo.tabular`, for a model that embeds categorical columns) (steepest.models.build_model)."""
    section = recipe.model
    return build_model(section.name, section.kwargs(), input_shape, num_outputs, component=section.component, tabular=tabular)


# -- optimizer --------------------------------------------------------------------------------------
def optimizer_kwargs(recipe: Recipe, world_size: int = 1) -> dict[str, Any]:
    """lr (scaled by `optimizer.scale_lr` for `world_size` processes), weight_decay and the
    section's own keys; values left unset (a component's) are not passed, so its defaults hold."""
    section = recipe.optimizer
    kwargs = {k: v for k, v in (("lr", section.lr), ("weight_decay", section.weight_decay)) if v is not None}
    if "lr" in kwargs and world_size > 1:
        kwargs["lr"] *= {"none": 1.0, "linear": world_size, "sqrt": math.sqrt(world_size)}[section.scale_lr]
    return {**kwargs, **section.kwargs()}


def build_optimizer(recipe: Recipe, model: nn.Module, world_size: int = 1) -> torch.optim.Optimizer:
    """The recipe's optimizer over `model`: a registered name gets steepest's parameter groups (no
    weight decay and no trust ratio for parameters with fewer than two dimensions, unless
    `optimizer.decay_1d`; `finetune.lr_decay` as per-group lr scales); an import path gets
    `model.parameters()` and the recipe's keys as its arguments. Under torchrun (`world_size` > 1)
    `optimizer.scale_lr` scales the lr with the global batch."""
    section = recipe.optimizer
    try:
        if section.component is not None:
            if recipe.finetune is not None and recipe.finetune.lr_decay is not None:
                raise ConfigError("finetune.lr_decay needs a registered optimizer (optimizer.name); give your optimizer "
                                  "parameter groups yourself")
            cls = import_object(section.component, "optimizer.component")
            return cls(model.parameters(), **optimizer_kwargs(recipe, world_size))
        kwargs = optimizer_kwargs(recipe, world_size)
        scales = optimizer_lr_scales(model, recipe.finetune, kwargs)
        if scales is not None:
            kwargs["lr_scale"] = scales
        return create_optimizer(section.name, model, decay_1d=section.decay_1d, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"optimizer ({section.name or section.component}): {exc}") from None


def needs_create_graph(recipe: Recipe) -> bool:
    """Whether the optimizer needs backward(create_graph=True) (AdaHessian's Hessian estimate)."""
    name = recipe.optimizer.name
    return bool(name and name in OPTIMIZERS and OPTIMIZERS.get(name).flags.get("needs_create_graph"))


# -- loss -------------------------------------------------------------------------------------------
def loss_name(recipe: Recipe, task: str) -> str | None:
    """The registered loss the recipe uses (the task's default when none is named; None for an import path)."""
    if recipe.loss.component is not None:
        return None
    return recipe.loss.name or DEFAULT_LOSS.get(task)


def check_default_loss_kwargs(task: str, kwargs: dict[str, Any]) -> None:
    """A recipe's loss keys given without `loss.name`, against the task's default loss (DEFAULT_LOSS).
    ConfigError naming the key, the loss it went to and what that loss takes."""
    name = DEFAULT_LOSS[task]
    target = LOSSES.get(name).target
    params, _ = accepted_arguments(target)
    for key in kwargs:
        if key not in params:
            valid = ", ".join(sorted(params)) or "none"
            raise ConfigError(f"loss.{key}: no loss.name is given, so the {task} data trains with {name}, which does not take "
                              f"'{key}' (it takes: {valid});{did_you_mean(key, sorted(params))} name the loss that does "
                              "(loss.name) or remove the key")
    check_kwargs("loss", target, kwargs)


def build_loss(recipe: Recipe, task: str, class_weights: torch.Tensor | None = None):
    """The recipe's loss for a `task`. `class_weights` (K,) (from `data.balance: class_weights`)
    go through the loss's own class-weight argument (see the LOSSES flag `class_weight`); a loss
    without one is refused rather than silently replaced."""
    section = recipe.loss
    kwargs = section.kwargs()
    if section.component is not None:
        target = import_object(section.component, "loss.component")
        weight_arg = "weight" if class_weights is not None else None
    else:
        name = loss_name(recipe, task)
        if name is None:
            raise ConfigError(f"loss.name: the data is a {task} task, which has no default loss; name one (loss.name)")
        record = LOSSES.get(name, "loss.name")
        fits = record.flags.get("task", "any")
        fits = fits if isinstance(fits, tuple) else (fits,)
        if "any" not in fits and task not in fits:
            raise ConfigError(f"loss.name: '{name}' is a {'/'.join(fits)} loss but the data is a {task} task; use {DEFAULT_LOSS[task]}")
        target, weight_arg = record.target, record.flags.get("class_weight")
        kwargs = {**record.defaults, **kwargs}
    if class_weights is not None:
        kwargs = {**kwargs, **_class_weight_kwargs(section, weight_arg, kwargs, class_weights, task)}
    if section.component is None and "multiclass" not in kwargs and "multiclass" in inspect.signature(target).parameters:
        kwargs["multiclass"] = task == "classification"  # the task decides, not the targets' shape (mixup's soft targets)
    if section.component is None and section.name is None:
        check_default_loss_kwargs(task, section.kwargs())
    try:
        loss = target(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss ({section.name or section.component or name}): {exc}") from None
    if not callable(loss):
        raise ConfigError(f"loss ({section.component}): built a {type(loss).__name__}, which is not callable")
    return loss


def _class_weight_kwargs(section, arg: str | None, given: dict, weights: torch.Tensor, task: str) -> dict[str, Any]:
    what = section.name or section.component
    if arg is None:
        raise ConfigError(f"data.balance: class_weights needs a loss that takes class weights; '{what}' does not "
                          "(use cross_entropy, nll, focal or bce_with_logits, or data.balance: sampler / oversample)")
    if arg in given:
        raise ConfigError(f"loss.{arg} and data.balance: class_weights both weight the classes; keep one")
    w = [float(v) for v in weights]
    if arg == "pos_weight" or (arg == "alpha" and task == "binary"):
        if len(w) != 2:
            raise ConfigError(f"data.balance: class_weights with loss '{what}' needs a binary task")
        return {arg: w[1] / w[0] if arg == "pos_weight" else w[1] / (w[0] + w[1])}
    return {arg: w}


# -- schedules --------------------------------------------------------------------------------------
SCHEDULABLE = ("momentum", "beta1", "weight_decay", "alpha", "rho", "eps", "dampening")


def build_step_schedule(section, total_steps: int, key: str = "schedule"):
    """One schedule section (a registered name or an import path) for a run of `total_steps` steps."""
    if section.component is not None:
        target = import_object(section.component, f"{key}.component")
        try:
            return target(**section.kwargs())
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({section.component}): {exc}") from None
    return build_schedule(section.name, total_steps, **section.kwargs())


def build_step_schedules(recipe: Recipe, total_steps: int) -> dict[str, Callable[[int], float]]:
    """Every scheduled hyperparameter: {"lr": ..., "momentum": ..., ...}."""
    schedules = {"lr": build_step_schedule(recipe.schedule, total_steps)}
    for key, section in recipe.schedules.items():
        schedules[key] = build_step_schedule(section, total_steps, f"schedules.{key}")
    return schedules


# -- batch transform ---------------------------------------------------------------------------------
def build_batch_transform(recipe: Recipe, num_classes: int | None, generator: torch.Generator):
    """mixup / CutMix from the recipe as `f(x, y) -> (x, y)` drawing from `generator` (None when
    the recipe has no batch_transform)."""
    section = recipe.batch_transform
    if section is None:
        return None
    if num_classes is None:
        raise ConfigError("batch_transform: mixup/CutMix need a classification task")
    target, defaults = component_target(section, BATCH_TRANSFORMS, "batch_transform")
    try:
        transform = target(**{**defaults, **section.kwargs(), "num_classes": num_classes})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"batch_transform ({section.name}): {exc}") from None
    return lambda x, y: transform(x, y, generator)


# -- callbacks --------------------------------------------------------------------------------------
def build_callbacks(sections: list[Component]) -> list[Callback]:
    """The recipe's `callbacks:` entries, in the order given."""
    built = []
    for i, section in enumerate(sections):
        key = f"callbacks.{i}"
        target, defaults = component_target(section, CALLBACKS, key)
        try:
            built.append(target(**{**defaults, **section.kwargs()}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({section.name or section.component}): {exc}") from None
    return built


# -- a run's components, together ---------------------------------------------------------------------
@dataclass
class Components:
    """Everything a Trainer takes besides the model, built from one recipe."""

    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    loader: DeviceLoader
    options: TrainerOptions
    schedules: dict[str, Callable[[int], float]]
    batch_transform: Callable | None
    rng: RandomState
    callbacks: list[Callback]
    eval_data: dict[str, Any]


def build_components(recipe: Recipe, model: nn.Module, data: DataBundle, augment=None, dist: DistContext | None = None,
                     device: torch.device | None = None) -> Components:
    """The recipe's components for `model` (its parameters as the optimizer will see them: after
    finetune, FSDP sharding) trained on `data` (in-memory splits already on `device`);
    `augment(x, generator)` is the data's batch augmentation, if any. Under torch.distributed the
    loader gives each rank its share."""
    dist = dist or DistContext()
    device = device or (data.train.x.device if isinstance(data.train, Split) else torch.device("cpu"))
    class_weights = data.class_weights.to(device) if data.class_weights is not None else None
    rng = RandomState()
    loader = build_loader(recipe, data, dist, device)
    options = build_trainer_options(recipe, split_size(data.train))
    return Components(
        optimizer=build_optimizer(recipe, model, dist.world_size),
        loss_fn=build_loss(recipe, data.info.task, class_weights),
        loader=loader,
        options=options,
        schedules=build_step_schedules(recipe, step_budget(loader.steps_per_epoch(options.accumulate), options)),
        batch_transform=build_batch_transforms(recipe, data, augment, rng),
        rng=rng,
        callbacks=build_recipe_callbacks(recipe),
        eval_data=build_eval_data(recipe, data, device),
    )


def build_loader(recipe: Recipe, data: DataBundle, dist: DistContext, device: torch.device | None = None) -> DeviceLoader | SampleLoader:
    """The training split's micro-batches: shuffled per (seed, epoch), weighted by `data.balance:
    sampler`, every world_size-th sample on each rank; tensors on the device (DeviceLoader, the
    fast path) or a Dataset through torch's DataLoader with the split's per-sample transform."""
    d = recipe.data
    common = dict(shuffle=d.shuffle, seed=recipe.trainer.seed, drop_last=d.drop_last, rank=dist.rank, world_size=dist.world_size,
                  weights=data.sample_weights)
    check = batch_checker(data.info.task, data.info.num_classes, where=data.info.source)
    if isinstance(data.train, DatasetSplit) and isinstance(data.train.dataset, IterableDataset):
        return IterableLoader(data.train.dataset, batch_size_for(recipe, split_size(data.train)), seed=recipe.trainer.seed,
                              rank=dist.rank, world_size=dist.world_size, transform=data.train.transform, device=device, check=check,
                              **_loader_options(d))
    if isinstance(data.train, DatasetSplit):
        return SampleLoader(data.train.dataset, batch_size_for(recipe, len(data.train)), **common, transform=data.train.transform,
                            device=device, check=check, **_loader_options(d))
    return DeviceLoader(data.train.x, data.train.y, batch_size_for(recipe, len(data.train)), **common)


def _loader_options(d) -> dict[str, Any]:
    return {"num_workers": d.num_workers, "pin_memory": d.pin_memory, "persistent_workers": d.persistent_workers,
            "prefetch_factor": d.prefetch_factor, "multiprocessing_context": d.multiprocessing_context}


def build_eval_data(recipe: Recipe, data: DataBundle, device: torch.device) -> dict[str, Any]:
    """The held-out splits for `Trainer.evaluate`: in-memory ones as they are, Dataset ones through
    a loader (in order, no shuffle)."""
    size = recipe.data.eval_batch_size or max(batch_size_for(recipe, split_size(data.train)), 256)
    out = {}
    for name in ("val", "test"):
        part = getattr(data, name)
        # held-out samples read one by one pass the training split's checks, on their first complete read
        check = batch_checker(data.info.task, data.info.num_classes, where=f"{data.info.source} {'validation' if name == 'val' else 'test'} split")
        if isinstance(part, DatasetSplit) and isinstance(part.dataset, IterableDataset):
            out[name] = IterableLoader(part.dataset, size, device=device, check=check, **_loader_options(recipe.data))
        elif isinstance(part, DatasetSplit):
            out[name] = SampleLoader(part.dataset, size, shuffle=False, device=device, check=check, **_loader_options(recipe.data))
        else:
            out[name] = part
    return out


def build_trainer_options(recipe: Recipe, n_train: int | None) -> TrainerOptions:
    t, d = recipe.trainer, recipe.data
    return TrainerOptions(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accumulate=t.accumulate, precision=t.precision,
        clip_norm=t.clip_norm, clip_value=t.clip_value, skip_nonfinite=t.skip_nonfinite,
        max_nonfinite_steps=t.max_nonfinite_steps, create_graph=needs_create_graph(recipe),
        log_every_n_steps=t.log_every_n_steps, eval_batch_size=d.eval_batch_size or max(batch_size_for(recipe, n_train), 256),
        cuda_graphs=t.cuda_graphs,
    )


def build_batch_transforms(recipe: Recipe, data: DataBundle, augment, rng: RandomState):
    """Augmentation, then mixup/CutMix, on training micro-batches; each draws from its own
    generator in `rng` (so checkpoints and the LR finder save and restore it)."""
    info = data.info
    mix = None
    if recipe.batch_transform is not None:
        mix = build_batch_transform(recipe, info.num_classes if info.task == "classification" else None,
                                    rng.generator("batch_transform", recipe.trainer.seed + MIXUP_SEED))
    if augment is None:
        return mix
    generator = rng.generator("augment", recipe.trainer.seed + AUGMENT_SEED)

    def transform(x, y):
        x = augment(x, generator)
        return mix(x, y) if mix is not None else (x, y)

    return transform


def build_recipe_callbacks(recipe: Recipe) -> list[Callback]:
    """The callbacks the recipe asks for, in the order they act on each event: evaluation first (so
    the metrics exist when the others look), then what decides from metrics (early stopping,
    gradual unfreezing), then the recipe's `callbacks:` in their order."""
    t = recipe.trainer
    callbacks: list[Callback] = [Evaluate(t.eval_every_n_epochs, t.eval_every_n_steps)]
    if t.early_stopping is not None:
        callbacks.append(EarlyStopping(**t.early_stopping.model_dump()))
    if recipe.finetune is not None and recipe.finetune.unfreeze_every_n_epochs:
        callbacks += build_callbacks([Component(name="gradual_unfreezing", every_n_epochs=recipe.finetune.unfreeze_every_n_epochs)])
    return callbacks + build_callbacks(recipe.callbacks)
