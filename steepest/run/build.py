"""A run assembled once, in one direction: recipe -> runtime (device, torchrun, seeds) -> data ->
model (init, output bias, finetune, DDP/FSDP wrap) -> components (`steepest.config.build`: optimizer,
loss, loader, options, schedules, batch transforms, the recipe's callbacks) -> the run's own
callbacks -> Trainer. Each phase is a function that returns values; the Trainer is built last and
is not edited afterwards.

    >>> from steepest.config import load_recipe
    >>> run = build_run(load_recipe("digits_mlp", ["trainer.max_steps=2"]), console=False)
    >>> run.trainer.total_steps
    2
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from steepest.config import Recipe, recipe_to_dict
from steepest.config.build import (
    EMBEDDING_DIM,
    build_components,
    build_model_from_recipe,
    metric_learning,
)
from steepest.config.schema import cuda_graphs_refusal
from steepest.config.validate import validate_recipe
from steepest.data import DataBundle, load_data
from steepest.data.augment import expand_bundle, for_data
from steepest.data.containers import split_size
from steepest.errors import ConfigError
from steepest.finetune import prepare_model as apply_finetune
from steepest.finetune.apply import plan_finetune
from steepest.nn.bias import init_output_bias
from steepest.track import MetricStore
from steepest.training import distributed
from steepest.training.callbacks import (
    Checkpoint,
    ConsoleLogger,
    ProgressBar,
    StoreLogger,
    TrainScalars,
)
from steepest.training.callbacks._registry import LOGGERS
from steepest.training.distributed import DistContext
from steepest.training.events import Callback
from steepest.training.precision import resolve_device
from steepest.training.state import seed_everything
from steepest.training.trainer import Trainer
from steepest.training.tta import tta_forward


@dataclass
class Run:
    trainer: Trainer
    data: DataBundle
    run_dir: Path | None
    store: MetricStore | None
    dist: DistContext
    notes: list[str]  # what the build did that a user should hear about (finetune actions, ...)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dist: DistContext
    seed: int


def check_device(recipe: Recipe) -> torch.device:
    """The device trainer.device names, refused in one line when this machine cannot train the recipe
    there (no such device, CUDA graphs off CUDA); nothing is built or written."""
    t = recipe.trainer
    device = resolve_device(t.device)
    if t.cuda_graphs and (refusal := cuda_graphs_refusal(str(device), torch.cuda.is_available())):
        raise ConfigError(f"trainer.cuda_graphs: {refusal}")
    return device


def setup_runtime(recipe: Recipe) -> Runtime:
    """The device, the process group under torchrun, determinism, and every global seed."""
    t = recipe.trainer
    ctx, device = distributed.init_from_env(check_device(recipe))
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(t.seed)
    return Runtime(device, ctx, t.seed)


def load_run_data(recipe: Recipe, runtime: Runtime, data: DataBundle | None = None):
    """The recipe's data on the device, and the augmentation to apply to training batches (None
    when there is none, or when `copies` already drew the augmented copies into the training split)."""
    data = (data or load_data(recipe.data, runtime.seed)).to(runtime.device)
    if not recipe.data.augment:
        return data, None
    try:
        augment, copies = for_data(recipe.data.augment, data.info)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.augment: {exc}") from None
    if copies:  # offline augmentation ("x10": copies=9): the training split grows by `copies` augmented copies
        return expand_bundle(data, augment, copies, runtime.seed), None
    return data, augment


def build_run_model(recipe: Recipe, data: DataBundle, runtime: Runtime) -> tuple[nn.Module, nn.Module, list[str]]:
    """The model (initialized, output bias, finetune applied), the module the loop calls (DDP-wrapped,
    FSDP-sharded and/or compiled) and the notes of what finetune did."""
    t, info = recipe.trainer, data.info
    model = build_model_from_recipe(recipe, info.input_shape, info.num_outputs, info.tabular).to(runtime.device)
    if t.channels_last:  # NHWC weights: convolutions then run (and return activations) channels-last
        model = model.to(memory_format=torch.channels_last)
    if recipe.model.kwargs().get("output_bias") == "auto":
        init_output_bias(model, data.train.y, info.task)
    notes = [f"finetune: {n}" for n in apply_finetune(model, recipe.finetune)] if recipe.finetune is not None else []
    if runtime.dist.enabled and t.strategy == "fsdp":
        unsupported = [c.name for c in recipe.callbacks if c.name in ("swa", "ema")]
        if recipe.finetune is not None and recipe.finetune.lora is not None:
            unsupported.append("finetune.lora")
        if unsupported:
            raise ConfigError(f"{', '.join(unsupported)} with trainer.strategy=fsdp is not supported yet; use strategy: ddp")
    wrapped = distributed.wrap_model(model, runtime.dist, runtime.device, t.strategy)  # before the optimizer: FSDP replaces the parameters
    if t.cuda_graphs and (refusal := cuda_graphs_refusal(str(runtime.device), True, world_size=runtime.dist.world_size)):
        raise ConfigError(f"trainer.cuda_graphs: {refusal}")
    if t.cuda_graphs:  # forward and backward recorded once as CUDA graphs and replayed (inductor's CUDA graph trees)
        wrapped.compile(mode="reduce-overhead")
    elif t.compile:  # in place (nn.Module.compile): the module keeps its parameter names, so checkpoints and
        wrapped.compile()  # model.safetensors read as those of an uncompiled run (torch.compile(m) would prefix _orig_mod.)
    return model, wrapped, notes


def check_image_keys(recipe: Recipe, data: DataBundle) -> None:
    """`trainer.channels_last` needs image inputs (C, H, W); `trainer.tta: hflip` needs image
    classification (softmax over two or more classes) and batches weighted by their samples."""
    t, info = recipe.trainer, data.info
    shape = tuple(info.input_shape)
    if t.channels_last and len(shape) != 3:
        raise ConfigError(f"trainer.channels_last: needs image inputs (C, H, W); the data has shape {shape}")
    if t.tta != "none":
        if len(shape) != 3 or info.task != "classification" or (info.num_outputs or 0) < 2:
            raise ConfigError(f"trainer.tta: {t.tta} averages the class probabilities of mirrored images; it needs image classification "
                              f"(C, H, W inputs, two or more classes), the data is {info.task} with inputs of shape {shape}")
        if recipe.data.balance == "class_weights" and t.accumulate > 1:
            raise ConfigError("trainer.tta with data.balance: class_weights weights accumulated micro-batches by samples, "
                              "not by class weight; use trainer.accumulate: 1 or data.balance: sampler")


def build_run_callbacks(recipe: Recipe, run_dir: Path | None, store: MetricStore | None, console: bool) -> list[Callback]:
    """What a run adds after the recipe's own callbacks and the caller's: checkpoints (after the
    decisions of the step, so the saved state includes them), then what records and shows the run."""
    t = recipe.trainer
    callbacks: list[Callback] = []
    if run_dir is not None and recipe.checkpoint.enabled:
        c = recipe.checkpoint
        callbacks.append(Checkpoint(run_dir / "checkpoints", c.every_n_steps, c.every_n_epochs, c.keep_last, c.keep_best, c.monitor,
                                    on_interrupt=True))
    callbacks.append(TrainScalars(t.log_every_n_steps))
    if store is not None:
        callbacks.append(StoreLogger(store))
    if run_dir is not None:
        hparams = recipe_to_dict(recipe)
        callbacks += [LOGGERS.get(name).target.for_run(run_dir, hparams, t.histograms_every_n_steps) for name in t.loggers]
    progress = ProgressBar({"auto": None, "on": True, "off": False}[t.progress] if console else False)
    if console and not progress.enabled:
        callbacks.append(ConsoleLogger())
    callbacks.append(progress)
    return callbacks


def build_run(recipe: Recipe, run_dir: str | Path | None = None, *, data: DataBundle | None = None,
              console: bool = True, extra_callbacks: list[Callback] | None = None) -> Run:
    """Everything `steepest train` builds before the first step, in one pass: the recipe is checked,
    then runtime, data, model and components are built in that order, and the Trainer last.
    `data`: use this bundle instead of loading the recipe's. `run_dir=None`: nothing is written."""
    validate_recipe(recipe)
    runtime = setup_runtime(recipe)
    data, augment = load_run_data(recipe, runtime, data)
    if metric_learning(recipe):  # labels say which samples belong together; the model outputs embeddings
        if data.info.task != "classification":
            raise ConfigError(f"loss.name: '{recipe.loss.name}' learns embeddings from class labels; the data is a {data.info.task} task")
        width = int(recipe.model.kwargs().get("embedding_dim", EMBEDDING_DIM))
        data = dataclasses.replace(data, info=dataclasses.replace(data.info, task="metric", num_outputs=width))
    check_image_keys(recipe, data)
    plan = []
    if recipe.finetune is not None and recipe.finetune.plan == "auto":  # a choice that needs the data's size
        section, note = plan_finetune(recipe.finetune, split_size(data.train) or 0, data.info.num_classes)
        recipe, plan = recipe.model_copy(update={"finetune": section}), [f"finetune: {note}"]
    model, wrapped, notes = build_run_model(recipe, data, runtime)
    notes = plan + notes
    parts = build_components(recipe, model, data, augment, runtime.dist, runtime.device)
    run_path = Path(run_dir) if run_dir is not None else None
    store = MetricStore(run_path / "metrics.db") if run_path is not None and runtime.dist.rank == 0 else None
    callbacks = [*parts.callbacks, *(extra_callbacks or []), *build_run_callbacks(recipe, run_path, store, console)]
    trainer = Trainer(wrapped, parts.optimizer, parts.loss_fn, parts.loader, options=parts.options,
                      eval_data=parts.eval_data, info=data.info, schedules=parts.schedules,
                      callbacks=callbacks, batch_transform=parts.batch_transform, rng=parts.rng, dist=runtime.dist,
                      recipe=recipe_to_dict(recipe), forward=tta_forward(recipe.trainer.tta))
    if runtime.dist.enabled:
        notes.append(global_batch_note(recipe, parts.loader, runtime.dist, parts.optimizer.param_groups[0]["lr"]))
    if console and runtime.dist.rank == 0:
        print("\n".join(run_header(recipe, data, model, trainer, runtime, run_path) + notes), file=sys.stderr)
    return Run(trainer, data, run_path, store, runtime.dist, notes)


def run_header(recipe: Recipe, data: DataBundle, model: nn.Module, trainer: Trainer, runtime: Runtime,
               run_dir: Path | None) -> list[str]:
    """What a run is, in three lines, before its first step: where it is written; device, precision
    and data; model size, optimizer and the step budget."""
    info, t = data.info, recipe.trainer
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    classes = f", {info.num_classes} classes" if info.num_classes else ""
    opt = recipe.optimizer
    hyper = f"lr {opt.lr:g}" + (f", weight decay {opt.weight_decay:g}" if opt.weight_decay else "") if opt.lr is not None else "its own defaults"
    where = f"-> {run_dir}" if run_dir is not None else "(nothing written)"
    per_epoch = f"{trainer.steps_per_epoch:,}" if trainer.steps_per_epoch else "? (a stream)"
    return [
        f"{recipe.name or 'recipe'} {where}",
        f"  {runtime.device.type}, {t.precision} | data {info.source}: train {_size(data.train)} / val {_size(data.val)} / "
        f"test {_size(data.test)} ({info.task}{classes})",
        f"  model {recipe.model.name or recipe.model.component}: {total:,} parameters ({trainable:,} trainable) | optimizer "
        f"{opt.name or opt.component}, {hyper} | {trainer.total_steps:,} steps ({per_epoch} per epoch)",
    ]


def global_batch_note(recipe: Recipe, loader, dist: DistContext, lr: float) -> str:
    """Under torchrun the global batch grows with the number of processes; say so, and what lr runs."""
    per_step = loader.batch_size * recipe.trainer.accumulate
    rule = recipe.optimizer.scale_lr
    how = f"scaled by optimizer.scale_lr: {rule}" if rule != "none" else "not scaled; optimizer.scale_lr: linear or sqrt scales it"
    return (f"torchrun: {dist.world_size} processes x {per_step} samples per step = a global batch of "
            f"{dist.world_size * per_step}; lr {lr:.3g} ({how})")


def _size(part) -> str:
    n = split_size(part)
    return "a stream" if n is None else f"{n:,}"
