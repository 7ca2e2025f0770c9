"""A training run from a recipe: run directory, data, components, resume, fit, test, summary."""

from __future__ import annotations

import gc
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from steepest.config import Recipe, recipe_to_dict
from steepest.config.yaml_io import dump_yaml
from steepest.data import DataBundle, load_data
from steepest.errors import CheckpointError, ConfigError
from steepest.models import build_model
from steepest.track import MetricStore, default_run_dir
from steepest.train import distributed
from steepest.train.build import (
    build_batch_transform,
    build_loss,
    build_lr_schedule,
    build_optimizer,
    build_user_callbacks,
    needs_create_graph,
    validate_recipe,
)
from steepest.train.callbacks import Checkpoint, EarlyStopping, Evaluate, MetricLogger, ProgressBar
from steepest.train.checkpoint import CheckpointManager, atomic_write_bytes
from steepest.train.precision import resolve_device
from steepest.train.state import seed_everything
from steepest.train.trainer import Trainer


@dataclass
class Run:
    trainer: Trainer
    data: DataBundle
    run_dir: Path | None
    store: MetricStore | None
    dist: distributed.DistContext


def build_run(recipe: Recipe, run_dir: str | Path | None = None, *, data: DataBundle | None = None,
              console: bool = True, extra_callbacks: list | None = None) -> Run:
    """Everything `steepest train` builds before the first step. `run_dir=None`: nothing written."""
    validate_recipe(recipe)
    t = recipe.trainer
    device = resolve_device(t.device)
    ctx, device = distributed.init_from_env(device)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(t.seed)
    data = (data or load_data(recipe.data, t.seed)).to(device)
    augment, copies = _augmentation(recipe.data.augment, data.info)
    if copies:  # the references' "x10 augmentation": the training split grows by `copies` augmented copies
        from steepest.data.augment import expand_bundle

        data = expand_bundle(data, augment, copies, t.seed)
    model = build_model(recipe.model, data.info.input_shape, data.info.num_outputs).to(device)
    if recipe.model.kwargs().get("output_bias") == "auto":
        from steepest.nn.init import init_output_bias

        init_output_bias(model, data.train.y, data.info.task)
    finetune_notes: list[str] = []
    if recipe.finetune is not None:
        from steepest.finetune import prepare_model

        finetune_notes = prepare_model(model, recipe.finetune)
    if ctx.enabled and t.strategy == "fsdp":
        unsupported = [c.name for c in recipe.callbacks if c.name in ("swa", "ema")]
        if recipe.finetune is not None and recipe.finetune.lora is not None:
            unsupported.append("finetune.lora")
        if unsupported:
            raise ConfigError(f"{', '.join(unsupported)} with trainer.strategy=fsdp is not supported yet; use strategy: ddp")
    wrapped = distributed.wrap_model(model, ctx, device, t.strategy)  # before the optimizer: FSDP replaces the parameters
    optimizer = build_optimizer(recipe, model)
    loss_fn = build_loss(recipe, data.info.task)
    balance = recipe.data.balance if data.info.task in ("classification", "binary") else "none"
    if balance == "class_weights":
        from steepest.data.imbalance import class_weights

        weights = class_weights(data.train.y.reshape(-1).long(), data.info.num_classes or 2).to(device)
        loss_fn = _weighted(loss_fn, weights, data.info.task)
    batch_size = len(data.train) if recipe.data.batch_size == "full" else recipe.data.batch_size
    if t.compile:
        wrapped = torch.compile(wrapped)

    run_path = Path(run_dir) if run_dir is not None else None
    store = MetricStore(run_path / "metrics.db") if run_path is not None and ctx.rank == 0 else None
    callbacks: list = [Evaluate(t.eval_every_n_epochs, t.eval_every_n_steps)]
    if t.early_stopping is not None:
        callbacks.append(EarlyStopping(**t.early_stopping.model_dump()))
    if recipe.finetune is not None and recipe.finetune.unfreeze_every_n_epochs:
        from steepest.finetune import GradualUnfreezing

        callbacks.append(GradualUnfreezing(recipe.finetune.unfreeze_every_n_epochs))
    callbacks += build_user_callbacks(recipe) + list(extra_callbacks or [])
    if run_path is not None and recipe.checkpoint.enabled:
        c = recipe.checkpoint
        callbacks.append(Checkpoint(run_path / "checkpoints", c.every_n_steps, c.every_n_epochs, c.keep_last, c.keep_best, c.monitor))
    progress = ProgressBar({"auto": None, "on": True, "off": False}[t.progress]) if console else ProgressBar(False)
    callbacks += [MetricLogger(store, t.log_every_n_steps, console=console), progress]

    trainer = Trainer(
        wrapped, optimizer, loss_fn, data,
        max_epochs=t.max_epochs, max_steps=t.max_steps, batch_size=batch_size,
        eval_batch_size=recipe.data.eval_batch_size, accumulate=t.accumulate, seed=t.seed,
        shuffle=recipe.data.shuffle, drop_last=recipe.data.drop_last, device=device, precision=t.precision,
        clip_norm=t.clip_norm, clip_value=t.clip_value, max_nonfinite_steps=t.max_nonfinite_steps,
        log_every_n_steps=t.log_every_n_steps, callbacks=callbacks, create_graph=needs_create_graph(recipe),
        skip_nonfinite=t.skip_nonfinite,
        recipe=recipe_to_dict(recipe), rank=ctx.rank, world_size=ctx.world_size,
    )
    if balance == "sampler":
        from steepest.data.imbalance import sample_weights

        trainer.loader.weights = sample_weights(data.train.y.reshape(-1).long(), data.info.num_classes or 2)
    trainer.schedules["lr"] = build_lr_schedule(recipe, trainer.total_steps)
    for key, section in recipe.schedules.items():
        trainer.schedules[key] = build_lr_schedule(recipe, trainer.total_steps, section)
    trainer.progress_active = progress.enabled
    transform, generator = build_batch_transform(recipe, data.info.num_classes if data.info.task == "classification" else None, t.seed)
    if augment is not None and not copies:  # with copies the augmented set was drawn once, above
        transform, trainer.generators["augment"] = _with_augmentation(augment, transform, t.seed)
    trainer.engine.batch_transform, trainer.generators["batch_transform"] = transform, generator
    if console and ctx.rank == 0:
        for note in finetune_notes:
            print(f"finetune: {note}")
    return Run(trainer, data, run_path, store, ctx)


def _augmentation(options: dict | None, info):
    if not options:
        return None, 0
    from steepest.data.augment import for_data

    try:
        return for_data(options, info)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.augment: {exc}") from None


def _with_augmentation(augment, then, seed: int):
    """Augmentation on training batches (before mixup/CutMix when both are set), with its own generator."""
    generator = torch.Generator().manual_seed(seed + 104729)

    def transform(x, y):
        x = augment(x, generator)
        return then(x, y) if then is not None else (x, y)

    return transform, generator


def _weighted(loss_fn, class_weight: torch.Tensor, task: str):
    """Per-class weights for the recipe's loss: CE's `weight`, or BCE's pos_weight (neg/pos) for binary tasks."""
    if task == "binary":
        pos_weight = class_weight[1] / class_weight[0]
        return lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out, y.reshape(out.shape).to(out.dtype), pos_weight=pos_weight)
    if hasattr(loss_fn, "weight"):
        loss_fn.weight = class_weight
        return loss_fn
    return lambda out, y: torch.nn.functional.cross_entropy(out, y, weight=class_weight.to(out.dtype))


def resume(run: Run) -> int:
    """Load the newest good checkpoint of the run directory; returns the step resumed from (0: none)."""
    manager = CheckpointManager(run.run_dir / "checkpoints")
    found = manager.load_latest()
    if found is None:
        if manager.step_files():
            raise CheckpointError(f"no usable checkpoint in {manager.dir}: every one is corrupt; delete them to start over")
        warnings.warn(f"nothing to resume in {manager.dir}; starting from scratch", stacklevel=2)
        return 0
    state, path = found
    saved, current = state.get("config", {}), run.trainer.recipe
    if _training_relevant(saved) != _training_relevant(current):
        raise CheckpointError(f"{path} was written by a different recipe; resume with the run's own config.yaml or start a new --run-dir")
    run.trainer.load_state_dict(state)
    if run.store is not None:
        run.store.truncate_after(run.trainer.state.step)
    return run.trainer.state.step


def _training_relevant(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe that must match to continue a run (not budget, logging or device)."""
    ignored = {"trainer": {"max_epochs", "max_steps", "progress", "device", "log_every_n_steps"}, "checkpoint": {"every_n_steps", "every_n_epochs", "keep_last"}}
    return {sec: ({k: v for k, v in val.items() if k not in ignored.get(sec, set())} if isinstance(val, dict) else val)
            for sec, val in config.items() if sec not in ("name", "description")}


def write_config(recipe: Recipe, run_dir: Path) -> None:
    atomic_write_bytes(run_dir / "config.yaml", dump_yaml(recipe_to_dict(recipe)).encode())


def finish(run: Run, started: float) -> dict[str, Any]:
    """Test-set evaluation, final weights and summary.json."""
    trainer = run.trainer
    test = trainer.evaluate("test")
    val = {k: v for k, v in trainer.state.metrics.items() if k.startswith("val_")}
    if not val:
        val = trainer.evaluate("val")
    info = run.data.info
    summary: dict[str, Any] = {
        "status": "completed",
        "task": info.task,
        "data": info.source,
        "steps": trainer.state.step,
        "epochs": trainer.state.epoch,
        "stop_reason": trainer.state.stop_reason,
        "nonfinite_steps": trainer.state.nonfinite_total,
        "wall_seconds": round(time.time() - started, 3),
        **val,
        **test,
    }
    full_state = trainer.model_state_dict() if trainer.sharded else None  # FSDP: every rank gathers
    if run.run_dir is not None and run.dist.rank == 0:
        model = trainer.unwrapped_model
        state = full_state or model.state_dict()
        from steepest.finetune.lora import has_lora, lora_state_dict, merged_state_dict

        if has_lora(model):  # ship plain layers (W0 + (alpha/r) B A) and the adapters apart
            save_file(_cpu(lora_state_dict(model)), str(run.run_dir / "lora_adapters.safetensors"))
            state = merged_state_dict(model)
        model_state = _cpu(state)
        save_file(model_state, str(run.run_dir / "model.safetensors"), metadata={"data_info": json.dumps(info.to_dict())})
        atomic_write_bytes(run.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def train(recipe: Recipe, run_dir: str | Path | None = None, *, resume_run: bool = False, console: bool = True,
          extra_callbacks: list | None = None) -> dict[str, Any]:
    """Train a recipe end to end; returns the summary (also written to run_dir/summary.json)."""
    started = time.time()
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(recipe.name or "run")
    run_path.mkdir(parents=True, exist_ok=True)
    run = build_run(recipe, run_path, console=console, extra_callbacks=extra_callbacks)
    try:
        if run.dist.rank == 0:
            write_config(recipe, run_path)
            atomic_write_bytes(run_path / "data_info.json", json.dumps(run.data.info.to_dict(), indent=2).encode())
        if resume_run:
            resume(run)
        run.trainer.fit()
        summary = finish(run, started)
        summary["run_dir"] = str(run_path)
        distributed.barrier(run.dist)  # no rank tears the process group down while another still uses it
        return summary
    finally:
        if run.store is not None:
            run.store.close()
        ctx = run.dist
        del run  # free the model (with FSDP it holds the process group) now, not during interpreter shutdown,
        gc.collect()  # where a process group's worker threads abort the process ("terminate called ...")
        distributed.shutdown(ctx)
