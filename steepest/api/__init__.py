"""The Python API: `steepest.fit` trains your own model on your own data in one call;
`steepest.train` runs a recipe; `steepest.load_recipe` reads one.

    >>> import torch, steepest
    >>> x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    >>> result = steepest.fit(model, (x, y), val_data=(x[:64], y[:64]), max_epochs=2, console=False)
    >>> sorted(k for k in result.metrics if k.startswith("val_"))[:2], result.model.training
    (['val_accuracy', 'val_loss'], False)

Data may be in-memory arrays `(x, y)` (moved to the device once: the fast path), any map-style
`torch.utils.data.Dataset` (read sample by sample through torch's DataLoader, never
materialized), or a ready `DataLoader` (used as it is). Batches are (x, y), (x1, ..., y) or dicts
with the target under `target_key` (a Hugging Face model called as `model(**batch)` whose output
carries its own loss): see `steepest.training.batch`. Every form's rows pass the same checks
(`steepest.data.checks.batch_checker`) before the model sees them.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from steepest.api.arguments import DEFAULT_BATCH_SIZE, check_arguments, check_data_arguments
from steepest.api.sources import (
    as_loader,
    check_rows,
    class_ids,
    eval_source,
    first_batch,
    task_info,
)
from steepest.config import Recipe, load_recipe
from steepest.config.arguments import RUN_CONFIG
from steepest.config.build import DEFAULT_LOSS
from steepest.config.load import load_run_recipe
from steepest.config.schema import cuda_graphs_refusal
from steepest.data import DataInfo, DeviceLoader
from steepest.data.checks import batch_checker
from steepest.errors import ConfigError, DataError
from steepest.losses import LOSSES
from steepest.optim import OPTIMIZERS, defaults_of
from steepest.optim import create as create_optimizer
from steepest.run import train as train_recipe
from steepest.run.directory import prepare_run_dir, release_run_dir
from steepest.run.finish import final_val_metrics, parameter_counts, restore_best_weights
from steepest.schedules import build_schedule
from steepest.track import MetricStore
from steepest.training.callbacks import (
    Checkpoint,
    ConsoleLogger,
    EarlyStopping,
    Evaluate,
    StoreLogger,
    TrainScalars,
)
from steepest.training.callbacks._registry import LOGGERS
from steepest.training.checkpoint import atomic_write_bytes
from steepest.training.distributed import barrier, init_from_env, torchrun_env, wrap_model
from steepest.training.events import Callback
from steepest.training.precision import resolve_device
from steepest.training.state import seed_everything
from steepest.training.trainer import Trainer, TrainerOptions, step_budget

__all__ = ["FitResult", "fit", "load_recipe", "train"]





@dataclass
class FitResult:
    """What `fit` returns: the final validation/test metrics and train loss, the run directory
    (None when nothing was written) and the Trainer (its model, optimizer and state). `model` is
    in eval mode."""

    metrics: dict[str, float]
    run_dir: Path | None
    trainer: Trainer

    @property
    def model(self) -> nn.Module:
        return self.trainer.unwrapped_model


def _no_loss(outputs: Any, target: Any) -> torch.Tensor:
    raise DataError("the model's output carries no loss and no loss function was given: pass loss= (a name or a callable)")


def _no_loss_for_forward(outputs: Any, target: Any) -> torch.Tensor:
    raise ConfigError("your forward called loss_fn, but with a custom forward there is no default loss (the task is not guessed): "
                      "pass loss= (a name or a callable) or task= (its default loss)")


def _loss(loss: str | Callable | None, info: DataInfo | None, forward: Callable | None = None):
    if callable(loss):
        return loss
    name = loss or (DEFAULT_LOSS[info.task] if info is not None else None)
    if name is None:  # a model that returns its own loss (dict batches with labels) never calls it
        return _no_loss if forward is None else _no_loss_for_forward
    record = LOSSES.get(name, "loss")
    return record.target(**record.defaults)


def _optimizer(optimizer, model: nn.Module, lr: float | None, weight_decay: float | None) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        _check_optimizer_params(optimizer, model)
        return optimizer
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        OPTIMIZERS.get(str(optimizer), "optimizer")  # one line listing the names
    own = defaults_of(optimizer)
    kwargs = {"lr": lr if lr is not None else own.get("lr"), "weight_decay": weight_decay if weight_decay is not None else own.get("weight_decay")}
    try:
        return create_optimizer(optimizer, model, **{k: v for k, v in kwargs.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer ({optimizer}): {exc}") from None


def _check_optimizer_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """An optimizer object must update the model it is given with: none of the model's trainable parameters is a
    ConfigError (built on another model, or on a copy), some of them a warning (the others get gradients, never steps)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    missing = sum(id(p) not in held for p in trainable)
    if trainable and missing == len(trainable):
        raise ConfigError(f"optimizer: the {type(optimizer).__name__} passed holds none of the model's {len(trainable)} trainable parameter "
                          "tensors (built on another model, or on a copy of it?); build it on this model's parameters, or pass a name "
                          "(optimizer='adamw', lr=...)")
    if missing:
        warnings.warn(f"optimizer: {missing} of the model's {len(trainable)} trainable parameter tensors are not in the "
                      f"{type(optimizer).__name__} passed: they get gradients but never change (freeze them with "
                      "requires_grad_(False), or add them to the optimizer)", stacklevel=3)


def _prepare_run_dir(run_dir: str | Path, overwrite: bool) -> Path:
    """`prepare_run_dir`, its refusals in fit's terms (fit has `run_dir` and `overwrite`, no resume)."""
    try:
        return prepare_run_dir(run_dir, overwrite=overwrite)
    except ConfigError as exc:
        message = str(exc).replace("continue it with --resume, replace it with --overwrite", "replace it with overwrite=True")
        raise ConfigError(message.replace("pass --overwrite", "pass overwrite=True").replace("--run-dir", "run_dir")) from None


def _write_results(run_path: Path, trainer: Trainer, metrics: dict[str, float]) -> None:
    """The run's final weights (model.safetensors, atomic: `model.load_state_dict(safetensors.torch.load_file(...))`
    reads them back) and summary.json (the metrics returned, steps, stop reason, parameter counts)."""
    model = trainer.unwrapped_model
    summary = {"status": "completed", "task": getattr(trainer.info, "task", None), "steps": trainer.state.step,
               "epochs": trainer.state.epoch, "stop_reason": trainer.state.stop_reason,
               "nonfinite_steps": trainer.state.nonfinite_total,
               **parameter_counts(model), **metrics}
    atomic_write_bytes(run_path / "model.safetensors", st_save({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}))
    atomic_write_bytes(run_path / "summary.json", json.dumps(summary, indent=2).encode())


def _last_train_loss(scalars: TrainScalars) -> float:
    """The train loss of a run shorter than one log window (none was logged): the mean over its
    steps, skipped (non-finite) ones excluded; NaN when every step was skipped."""
    count = int(scalars.count)
    return float(scalars.loss_sum) / count if count else math.nan


@contextlib.contextmanager
def _callers_rng() -> Iterator[None]:
    """Put the caller's global random generators (random, numpy, torch CPU and CUDA) back as they
    were when the block ends, also on an exception: fit seeds them for its own run, and what the
    caller draws next (the next ensemble member's initial weights) continues where it was."""
    python, numpy_state, cpu, seed = random.getstate(), np.random.get_state(), torch.get_rng_state(), torch.initial_seed()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        elif torch.cuda.is_available():  # CUDA not started before fit: its generators start from the caller's seed, as they would have
            torch.cuda.manual_seed_all(seed)


# -- fit --------------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def fit(model: nn.Module, train_data: Any, val_data: Any = None, *, test_data: Any = None, task: str | None = None,
        optimizer: str | torch.optim.Optimizer = "adamw", lr: float | None = None, weight_decay: float | None = None,
        schedule: str | Callable[[int], float] = "constant", loss: str | Callable | None = None,
        max_epochs: int | None = None, max_steps: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, eval_batch_size: int | None = None,
        drop_last: bool = False, accumulate: int = 1, precision: str = "fp32", clip_norm: float | None = None, early_stopping: dict | None = None,
        callbacks: Sequence[Callback] = (), loggers: Sequence[str] = (), run_dir: str | Path | None = None, seed: int = 0,
        num_workers: int = 0, collate_fn: Callable | None = None, transform: Callable | None = None,
        target_key: str = "labels", forward: Callable | None = None, device: str = "auto", compile: bool = False,
        cuda_graphs: bool = False, overwrite: bool = False, console: bool = True) -> FitResult:
    """Train `model` on `train_data`; returns the final metrics, the run directory and the Trainer.

    Data (`train_data`, `val_data`, `test_data`): in-memory arrays `(x, y)` (numpy or torch: x (N,
    ...), y (N,) class ids (or a column (N, 1) of them) or (N, ...) targets; held-out x of train_data's
    per-sample shape), a torch `Dataset` (map-style or iterable; `batch_size`, `num_workers`, `collate_fn`
    and, for map-style ones, `drop_last` apply), or a ready `DataLoader` (used as it is: its own batch
    size, sampler, workers and collate_fn). Floating point inputs take the model's dtype in every form
    (numpy's float64 included); integer inputs are passed as they are (token ids). Rows are
    checked before the model sees them (NaN/inf inputs, labels outside [0, K), non-finite
    targets): arrays once up front, Datasets and DataLoaders batch by batch as they are read
    (held-out Datasets at their first evaluation). A bad one is a DataError naming the sample, by
    row or Dataset index ("train_data: sample 7 has label 10, outside [0, 10); ..."), or as
    "sample r of batch i" for a DataLoader that does not read in order.

    `task` (classification, binary, regression, multilabel, metric, language_modeling) is guessed
    when not given, from the first batch's targets and the model's output width (probed on that
    batch): float targets -> regression; integer ones -> classification, one class per output, or
    binary (labels 0/1) when the model has one output, or language_modeling (a cross-entropy per
    position: a causal LM's or token classification's (B, L) ids against (B, L, V) scores). A model
    that cannot take the first batch is a DataError naming the batch's shapes and dtypes (the model's
    own exception chained). With the task's default loss (cross
    entropy, bce_with_logits, MSE) outputs that cannot match the targets are a ConfigError naming
    the task and why it was taken.

    `optimizer`: a registry name (with `lr`/`weight_decay`, or its own defaults) or a ready
    optimizer object (then `lr`/`weight_decay` are refused: set them on it). `schedule`: a registry
    name or a function step -> lr multiplier (a torch LR scheduler is refused;
    `steepest.schedules.from_torch` records one as such a function). `loss`: a registry name or a
    callable; by default the task's, or the model's own when its output carries one. The budget is
    `max_epochs` and/or `max_steps` (10 epochs when neither is given). `transform(x, generator)` runs
    per sample in the DataLoader workers of a training Dataset (fresh draws each epoch, seeded per
    (seed, epoch, index)). `early_stopping` is a dict of `EarlyStopping`'s arguments (monitor, mode,
    patience, min_delta, restore_best, target) and needs `val_data`.

    `callbacks` are `steepest.training.events.Callback` objects (others are refused). A loss, the model's
    own or `loss`'s, must be one number (a 0-d tensor); another result is a ConfigError at the step.
    An optimizer object must hold the model's trainable parameters (none: ConfigError; some: a warning).

    `forward(model, batch, loss_fn) -> (outputs, loss)` replaces the batch rule for training,
    evaluation and the output-width probe; the task is then not guessed (pass `task` for metrics)
    and the rows are not checked. Metrics compare the outputs with the batch rule's target: the
    batch's last item (batch[target_key] for dicts), so give (x, w, y), not (x, y, w).

    With `run_dir`, the run's metrics (metrics.db), checkpoints, final weights (model.safetensors),
    summary.json (the result's metrics, steps, stop reason) and `loggers` (tensorboard, csv,
    mlflow, wandb) are written there; a `run_dir` that already holds a run is refused unless
    `overwrite`. `compile` compiles the model in place (torch.compile; parameter names unchanged);
    `cuda_graphs` (CUDA only, `accumulate` 1, one process) also records its forward and backward as
    CUDA graphs (trainer.cuda_graphs). The global random generators (random, numpy, torch) are
    seeded with `seed` for the run (the same seed and initial weights give the same result) and put
    back as the caller had them when fit returns or raises, so a model built next draws fresh weights.

    The result's `metrics` hold the last val_* metrics, test_* ones when `test_data` is given, and
    `train_loss`: the mean over the last logged window (`log_every_n_steps`, 10 steps), or over all
    steps of a shorter run. `result.model` is left in eval mode (dropout off, batch norm on its
    running statistics): call `model.train()` to train it further.

    Errors on bad input are one-line `steepest.errors` exceptions, raised before training starts
    where they can be: ConfigError for arguments (out of range, unknown, or with no effect on the
    data given: `transform` for arrays or a DataLoader; `batch_size`, `num_workers`, `collate_fn`
    for a ready DataLoader; `loggers` without `run_dir`), DataError for data.
    """
    check_arguments(task=task, optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule, loss=loss, max_epochs=max_epochs,
                     max_steps=max_steps, batch_size=batch_size, eval_batch_size=eval_batch_size, accumulate=accumulate,
                     precision=precision, clip_norm=clip_norm, early_stopping=early_stopping, val_data=val_data, callbacks=callbacks, loggers=loggers,
                     run_dir=run_dir, seed=seed, num_workers=num_workers)
    check_data_arguments(train_data, val_data, test_data, batch_size, eval_batch_size, num_workers, collate_fn, transform)
    if drop_last and isinstance(train_data, (DataLoader, IterableDataset)):
        raise ConfigError(f"drop_last applies to arrays and map-style Datasets that fit batches; train_data is a "
                          f"{type(train_data).__name__}: {'set it on your DataLoader' if isinstance(train_data, DataLoader) else 'drop it'}")
    refusal = cuda_graphs and cuda_graphs_refusal(str(resolve_device(device)), torch.cuda.is_available(), accumulate,
                                                  torchrun_env().world_size)
    if refusal:  # the recipe's wording, in fit's terms
        raise ConfigError(f"fit(cuda_graphs=True): {refusal.replace('trainer.cuda_graphs=false', 'cuda_graphs=False').replace('trainer.', '')}")
    ctx, dev = init_from_env(resolve_device(device))
    with _callers_rng():
        seed_everything(int(seed))
        model = model.to(dev)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        checked = forward is None  # a custom forward reads its batches its own way: no row checks
        shards = {"rank": ctx.rank, "world_size": ctx.world_size, "dtype": dtype}
        loader = as_loader(train_data, batch_size, dev, seed, True, num_workers, collate_fn, transform, **shards, drop_last=drop_last)
        arrays = isinstance(loader, DeviceLoader)
        if checked and not arrays:  # the row checks that need no task, from the first batch on
            loader.check = batch_checker(None, None, target_key, "train_data")
        first = first_batch(loader)
        info = task_info(task, model, first, target_key, forward, loss is None, loader.y if arrays else None)
        if arrays:
            loader.y = class_ids(loader.y, info)
        if checked and arrays:
            check_rows(loader.x, loader.y, info, target_key, "train_data")
        elif checked and info is not None:
            loader.check = batch_checker(info.task, info.num_classes, target_key, "train_data")
        size = eval_batch_size or max(batch_size, 256)
        train_shape = tuple(loader.x.shape[1:]) if arrays else None
        eval_data = {k: eval_source(v, f"{k}_data", size, dev, num_workers, collate_fn, dtype, info, target_key, checked, train_shape)
                     for k, v in (("val", val_data), ("test", test_data)) if v is not None}
        options = TrainerOptions(max_epochs=_int(max_epochs) if max_epochs is not None or max_steps is not None else 10,
                                 max_steps=_int(max_steps), accumulate=int(accumulate), precision=precision, clip_norm=clip_norm,
                                 eval_batch_size=int(size), cuda_graphs=cuda_graphs)
        total = step_budget(loader.steps_per_epoch(options.accumulate), options)
        schedules = {"lr": build_schedule(schedule, int(total)) if isinstance(schedule, str) else schedule}
        run_path, store, extra = None, None, []
        if run_dir is not None:
            run_path = _prepare_run_dir(run_dir, overwrite) if ctx.rank == 0 else Path(run_dir)
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
        scalars = TrainScalars(options.log_every_n_steps)
        trainer = Trainer(wrapped, _optimizer(optimizer, model, lr, weight_decay), _loss(loss, info, forward), loader, options=options,
                          eval_data=eval_data, info=info, schedules=schedules, dist=ctx,
                          callbacks=[*own, *callbacks, scalars, *extra, *([ConsoleLogger()] if console and ctx.rank == 0 else [])],
                          forward=forward, target_key=target_key)
        try:
            trainer.fit()
            restore_best_weights(trainer)  # also when the budget ran out before the patience
            final_val_metrics(trainer, "val" in eval_data)  # of the weights returned, not of the last evaluated ones
            metrics = {k: v for k, v in trainer.state.metrics.items()}
            if "test" in eval_data:
                metrics.update(trainer.evaluate("test"))
            metrics.setdefault("train_loss", _last_train_loss(scalars))  # a run shorter than one log window
            if run_path is not None and ctx.rank == 0:
                _write_results(run_path, trainer, metrics)
        finally:
            if store is not None:
                store.close()
            if run_path is not None and ctx.rank == 0:
                release_run_dir(run_path)  # taken by prepare_run_dir: another process may train there now
        trainer.model.eval()  # the model returned is for predicting: dropout off, batch norm on its running statistics
    return FitResult(metrics, run_path, trainer)


def train(recipe: str | Path | Recipe | None, overrides: Sequence[str] | Mapping[str, Any] | None = None,
          run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False, console: bool = True,
          trust_code: bool = False) -> dict[str, Any]:
    """Train a recipe (a bundled name, a YAML file or a `Recipe`) with dotted `overrides`
    (["optimizer.lr=1e-3", ...] or {"optimizer.lr": 1e-3}); returns the run's summary (its `run_dir` included), as
    `steepest train` does. `resume=True` continues the run in `run_dir` (required); with `recipe=None` it is
    rebuilt from the run's own config.yaml, whose `component:` paths are refused unless `trust_code`."""
    if isinstance(overrides, str):
        raise ConfigError(f"overrides is a list of KEY=VALUE strings: [{overrides!r}]")
    if isinstance(overrides, Mapping):  # values as YAML flow text: JSON's numbers, strings, lists, true/false, null
        overrides = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if resume and run_dir is None:
        raise ConfigError("resume=True continues the run in run_dir: give run_dir (the run to continue)")
    if isinstance(recipe, Recipe) and overrides:
        raise ConfigError("overrides apply to a recipe name or file; edit the Recipe object instead")
    if recipe is None and resume and (Path(run_dir) / RUN_CONFIG).exists():
        loaded = load_run_recipe(Path(run_dir) / RUN_CONFIG, list(overrides or []), trust_code=trust_code)
    elif recipe is None and resume:
        raise ConfigError(f"{run_dir} is not a run directory (no {RUN_CONFIG}); give the folder of a run, or a recipe to start one there")
    else:
        loaded = recipe if isinstance(recipe, Recipe) else load_recipe(None if recipe is None else str(recipe), list(overrides or []))
    return train_recipe(loaded, run_dir, resume_run=resume, overwrite=overwrite, console=console)
