"""The Python API: `steepest.fit` trains your own model on your own data in one call;
`steepest.train` runs a recipe; `steepest.load_recipe` reads one.

    >>> import torch, steepest
    >>> x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    >>> result = steepest.fit(model, (x, y), val_data=(x[:64], y[:64]), max_epochs=2, console=False)
    >>> sorted(k for k in result.metrics if k.startswith("val_"))[:2]
    ['val_accuracy', 'val_loss']

Data may be in-memory arrays `(x, y)` (moved to the device once: the fast path), any map-style
`torch.utils.data.Dataset` (read sample by sample through torch's DataLoader, never
materialized), or a ready `DataLoader` (used as it is). Batches are (x, y), (x1, ..., y) or dicts
with the target under `target_key` (a Hugging Face model called as `model(**batch)` whose output
carries its own loss): see `steepest.training.batch`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from steepest.config import Recipe, load_recipe
from steepest.config.build import DEFAULT_LOSS
from steepest.config.schema import cuda_graphs_refusal
from steepest.data import DataInfo, DeviceLoader, Split
from steepest.data.checks import batch_checker
from steepest.data.stream import IterableLoader, SampleLoader, step_groups, to_device
from steepest.errors import ConfigError, DataError
from steepest.losses import LOSSES
from steepest.optim import OPTIMIZERS, defaults_of
from steepest.optim import create as create_optimizer
from steepest.run import train as train_recipe
from steepest.run.directory import prepare_run_dir
from steepest.schedules import build_schedule
from steepest.track import MetricStore
from steepest.training.batch import forward_batch, logits_of, target_of
from steepest.training.callbacks import (
    Checkpoint,
    ConsoleLogger,
    EarlyStopping,
    Evaluate,
    StoreLogger,
    TrainScalars,
)
from steepest.training.callbacks._registry import LOGGERS
from steepest.training.distributed import barrier, init_from_env, wrap_model
from steepest.training.events import Callback
from steepest.training.precision import resolve_device
from steepest.training.state import seed_everything
from steepest.training.trainer import Trainer, TrainerOptions, step_budget

__all__ = ["FitResult", "fit", "load_recipe", "train"]


@dataclass
class FitResult:
    """What `fit` returns: the final validation/test metrics and train loss, the run directory
    (None when nothing was written) and the Trainer (its model, optimizer and state)."""

    metrics: dict[str, float]
    run_dir: Path | None
    trainer: Trainer

    @property
    def model(self) -> nn.Module:
        return self.trainer.unwrapped_model


class _ReadyLoader:
    """A user's DataLoader as the Trainer's loader: each epoch is one pass over it, as it is (its
    own sampler and workers). Resuming mid-epoch replays the epoch up to the position."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device
        self.batch_size = loader.batch_size or 1
        try:
            self.num_samples = len(loader.dataset)
        except TypeError:
            self.num_samples = 0

    def __len__(self) -> int:
        try:
            return len(self.loader)
        except TypeError:
            raise DataError("a DataLoader over an IterableDataset has no length: give fit max_steps") from None

    def steps_per_epoch(self, accumulate: int = 1) -> int:
        return math.ceil(len(self) / accumulate)

    def batches(self, epoch: int, start: int = 0):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for i, batch in enumerate(self.loader):
            if i >= start:
                yield to_device(batch, self.device)

    def steps(self, epoch: int, accumulate: int = 1, start_step: int = 0):
        return step_groups(self.batches(epoch, start_step * accumulate), accumulate)

    def eval_batches(self, batch_size: int | None = None):
        return self.batches(0)


def _as_loader(data: Any, batch: int, device: torch.device, seed: int, shuffle: bool, workers: int,
               collate_fn: Callable | None, transform: Callable | None, rank: int = 0, world_size: int = 1,
               dtype: torch.dtype = torch.float32):
    """Arrays -> DeviceLoader (on the device); a Dataset -> SampleLoader; an IterableDataset ->
    IterableLoader; a DataLoader as it is. Under torchrun each rank takes its share. Floating
    point arrays take the model's `dtype`."""
    if isinstance(data, DataLoader):
        return _ReadyLoader(data, device)
    shards = {"rank": rank, "world_size": world_size}
    if isinstance(data, IterableDataset):
        return IterableLoader(data, batch, seed=seed, transform=transform, num_workers=workers, collate_fn=collate_fn,
                              device=device, pin_memory=device.type == "cuda", **shards)
    if isinstance(data, Dataset):
        return SampleLoader(data, batch, shuffle=shuffle, seed=seed, transform=transform, num_workers=workers,
                            collate_fn=collate_fn, device=device, pin_memory=device.type == "cuda", **shards)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in data)
        if len(x) != len(y):
            raise DataError(f"train_data: {len(x)} inputs but {len(y)} targets; they must match one to one")
        if len(x) == 0:
            raise DataError("train_data has no samples")
        if x.is_floating_point() and x.dtype != dtype:  # float64 arrays (numpy's default) train in the model's dtype
            x = x.to(dtype)
        return DeviceLoader(x.to(device), y.to(device), batch, shuffle=shuffle, seed=seed, **shards)
    raise DataError(f"data must be (x, y) arrays or tensors, a torch Dataset, an IterableDataset or a DataLoader; got a {type(data).__name__}")


def _eval_source(data: Any, batch: int, device: torch.device, workers: int, collate_fn, dtype: torch.dtype):
    if data is None:
        return None
    loader = _as_loader(data, batch, device, 0, False, workers, collate_fn, None, dtype=dtype)
    if isinstance(loader, DeviceLoader):
        return Split(loader.x, loader.y)
    return loader


def _first_batch(loader) -> Any:
    try:
        return next(iter(loader.batches(0)))
    except StopIteration:
        raise DataError("train_data has no batches") from None


def _info(task: str | None, model: nn.Module, first: Any, target_key: str, forward) -> DataInfo | None:
    """The task (given, or from the first batch: integer targets -> classification, float ->
    regression) and its number of classes (from the model's output width)."""
    target = target_of(first, target_key) if forward is None else None
    if task is None:
        if target is None or not isinstance(target, torch.Tensor):
            return None
        task = "regression" if target.is_floating_point() else "classification"
    if task not in DEFAULT_LOSS:
        raise ConfigError(f"task: '{task}' is not one of {', '.join(DEFAULT_LOSS)}")
    with torch.no_grad():
        was = model.training
        model.eval()
        outputs = logits_of(forward_batch(model, first, lambda o, t: torch.zeros(()), target_key)[0])
        model.train(was)
    width = int(outputs.shape[-1]) if outputs.dim() > 1 else 1
    classes = width if task == "classification" else (2 if task == "binary" else None)
    return DataInfo("python", task, tuple(first[0].shape[1:]) if isinstance(first, (tuple, list)) else (), width, classes)


def _no_loss(outputs: Any, target: Any) -> torch.Tensor:
    raise DataError("the model's output carries no loss and no loss function was given: pass loss= (a name or a callable)")


def _loss(loss: str | Callable | None, info: DataInfo | None):
    if callable(loss):
        return loss
    name = loss or (DEFAULT_LOSS[info.task] if info is not None else None)
    if name is None:
        return _no_loss  # a model that returns its own loss (dict batches with labels) never calls it
    record = LOSSES.get(name, "loss")
    return record.target(**record.defaults)


def _optimizer(optimizer, model: nn.Module, lr: float | None, weight_decay: float | None) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        OPTIMIZERS.get(str(optimizer), "optimizer")  # one line listing the names
    own = defaults_of(optimizer)
    kwargs = {"lr": lr if lr is not None else own.get("lr"), "weight_decay": weight_decay if weight_decay is not None else own.get("weight_decay")}
    try:
        return create_optimizer(optimizer, model, **{k: v for k, v in kwargs.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer ({optimizer}): {exc}") from None


def fit(model: nn.Module, train_data: Any, val_data: Any = None, *, test_data: Any = None, task: str | None = None,
        optimizer: str | torch.optim.Optimizer = "adamw", lr: float | None = None, weight_decay: float | None = None,
        schedule: str | Callable[[int], float] = "constant", loss: str | Callable | None = None,
        max_epochs: int | None = None, max_steps: int | None = None, batch_size: int = 64, eval_batch_size: int | None = None,
        accumulate: int = 1, precision: str = "fp32", clip_norm: float | None = None, early_stopping: dict | None = None,
        callbacks: Sequence[Callback] = (), loggers: Sequence[str] = (), run_dir: str | Path | None = None, seed: int = 0,
        num_workers: int = 0, collate_fn: Callable | None = None, transform: Callable | None = None,
        target_key: str = "labels", forward: Callable | None = None, device: str = "auto", compile: bool = False,
        cuda_graphs: bool = False, overwrite: bool = False, console: bool = True) -> FitResult:
    """Train `model` on `train_data`; returns the final metrics, the run directory and the Trainer.

    `optimizer`, `schedule`, `loss` are registry names (`steepest recipes`' components; an optimizer
    named without `lr`/`weight_decay` takes its own defaults) or objects; the loss defaults to the
    task's (cross entropy for integer targets, MSE for float ones), or the model's own when its
    output carries one. The budget is `max_epochs` and/or `max_steps` (10 epochs when neither is
    given). `transform(x, generator)` runs per sample in the DataLoader workers of a Dataset (fresh
    draws each epoch, seeded per (seed, epoch, index)). With `run_dir`, the run's metrics
    (metrics.db), checkpoints and `loggers` (tensorboard, csv, mlflow, wandb) are written there.
    A `run_dir` that already holds a run is refused unless `overwrite`. `compile` compiles the
    model in place (torch.compile; parameter names unchanged); `cuda_graphs` (CUDA only, `accumulate`
    1, one process) also records its forward and backward as CUDA graphs (trainer.cuda_graphs).
    Errors on bad input are one-line `steepest.errors` exceptions (DataError, ConfigError).
    """
    refusal = cuda_graphs and cuda_graphs_refusal(str(resolve_device(device)), torch.cuda.is_available(), accumulate,
                                                  int(os.environ.get("WORLD_SIZE", "1")))
    if refusal:  # the recipe's wording, in fit's terms
        raise ConfigError(f"fit(cuda_graphs=True): {refusal.replace('trainer.cuda_graphs=false', 'cuda_graphs=False').replace('trainer.', '')}")
    ctx, dev = init_from_env(resolve_device(device))
    seed_everything(seed)
    model = model.to(dev)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    shards = {"rank": ctx.rank, "world_size": ctx.world_size, "dtype": dtype}
    loader = _as_loader(train_data, batch_size, dev, seed, True, num_workers, collate_fn, transform, **shards)
    first = _first_batch(loader)
    if forward is None:  # the row checks that need no task, before the model sees the batch
        batch_checker(None, None, target_key, "train_data")(first, [])
    info = _info(task, model, first, target_key, forward)
    if info is not None and forward is None and hasattr(loader, "check"):
        loader.check = batch_checker(info.task, info.num_classes, target_key, "train_data")
    size = eval_batch_size or max(batch_size, 256)
    eval_data = {k: v for k, v in (("val", _eval_source(val_data, size, dev, num_workers, collate_fn, dtype)),
                                   ("test", _eval_source(test_data, size, dev, num_workers, collate_fn, dtype))) if v is not None}
    options = TrainerOptions(max_epochs=max_epochs if max_epochs or max_steps else 10, max_steps=max_steps, accumulate=accumulate,
                             precision=precision, clip_norm=clip_norm, eval_batch_size=size, cuda_graphs=cuda_graphs)
    total = step_budget(loader.steps_per_epoch(accumulate), options)
    schedules = {"lr": build_schedule(schedule, int(total)) if isinstance(schedule, str) else schedule}
    run_path, store, extra = None, None, []
    if run_dir is not None:
        run_path = prepare_run_dir(run_dir, overwrite=overwrite) if ctx.rank == 0 else Path(run_dir)
        barrier(ctx)
        extra = [Checkpoint(run_path / "checkpoints", every_n_epochs=1)]
        if ctx.rank == 0:
            store = MetricStore(run_path / "metrics.db")
            extra.append(StoreLogger(store))
            extra += [LOGGERS.get(name, "loggers").target.for_run(run_path, {"fit": {"optimizer": str(optimizer), "lr": lr}}) for name in loggers]
    own = [Evaluate(1)] if "val" in eval_data else []
    if early_stopping is not None:
        own.append(EarlyStopping(**early_stopping))
    wrapped = wrap_model(model, ctx, dev, "ddp")
    if cuda_graphs or compile:  # in place: the parameter names (checkpoints) are those of the module
        wrapped.compile(**({"mode": "reduce-overhead"} if cuda_graphs else {}))
    trainer = Trainer(wrapped, _optimizer(optimizer, model, lr, weight_decay), _loss(loss, info), loader, options=options,
                      eval_data=eval_data, info=info, schedules=schedules, dist=ctx,
                      callbacks=[*own, *callbacks, TrainScalars(options.log_every_n_steps), *extra,
                                 *([ConsoleLogger()] if console and ctx.rank == 0 else [])],
                      forward=forward, target_key=target_key)
    try:
        trainer.fit()
        if "val" in eval_data and "restored the weights" in trainer.state.stop_reason:
            trainer.evaluate("val", log=False)  # the metrics of the weights returned, not of the last evaluated ones
        metrics = {k: v for k, v in trainer.state.metrics.items()}
        if "test" in eval_data:
            metrics.update(trainer.evaluate("test"))
    finally:
        if store is not None:
            store.close()
    return FitResult(metrics, run_path, trainer)


def train(recipe: str | Path | Recipe, overrides: Sequence[str] | None = None, run_dir: str | Path | None = None, *,
          resume: bool = False, overwrite: bool = False, console: bool = True) -> dict[str, Any]:
    """Train a recipe (a bundled name, a YAML file or a `Recipe`) with dotted `overrides`
    (["optimizer.lr=1e-3", ...]); returns the run's summary (its `run_dir` included), as
    `steepest train` does."""
    loaded = recipe if isinstance(recipe, Recipe) else load_recipe(str(recipe), list(overrides or []))
    if isinstance(recipe, Recipe) and overrides:
        raise ConfigError("overrides apply to a recipe name or file; edit the Recipe object instead")
    return train_recipe(loaded, run_dir, resume_run=resume, overwrite=overwrite, console=console)
