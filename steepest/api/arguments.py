"""steepest.fit's arguments checked on their own, before anything runs: one-line ConfigErrors
that say what is valid."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from steepest.config.build import DEFAULT_LOSS
from steepest.errors import ConfigError, did_you_mean, unknown_choice
from steepest.losses import LOSSES
from steepest.optim import OPTIMIZERS
from steepest.schedules import SCHEDULES
from steepest.training.callbacks import (
    EarlyStopping,
)
from steepest.training.callbacks._registry import LOGGERS
from steepest.training.events import Callback
from steepest.training.precision import DTYPES

DEFAULT_BATCH_SIZE = 64
EARLY_STOPPING_KEYS = tuple(inspect.signature(EarlyStopping).parameters)
_EARLY_STOPPING_ALIASES = {"metric": "monitor", "delta": "min_delta", "restore_best_weights": "restore_best", "direction": "mode"}




# -- fit's arguments --------------------------------------------------------------------------------


def _whole(name: str, value: Any, least: int, note: str = "", optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{name} must be a whole number >= {least}{note}, got {value!r}")


def _number(name: str, value: Any, positive: bool, meaning: str) -> None:
    if value is None:
        return
    if isinstance(value, torch.Tensor) and value.numel() == 1:  # a tensor lr (compiled optimizers)
        value = value.item()
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value > 0 if positive else value >= 0)
            or not math.isfinite(value)):
        raise ConfigError(f"{name} must be {'a positive number' if positive else 'a number >= 0'} ({meaning}; finite) or None, got {value!r}")


def check_arguments(*, task, optimizer, lr, weight_decay, schedule, loss, max_epochs, max_steps, batch_size, eval_batch_size,
                     accumulate, precision, clip_norm, early_stopping, val_data, callbacks, loggers, run_dir, seed, num_workers) -> None:
    """fit's arguments on their own, before anything runs: one-line ConfigErrors saying what is valid."""
    _whole("max_epochs", max_epochs, 1, " (or None: 10 epochs unless max_steps is given)", optional=True)
    _whole("max_steps", max_steps, 1, " (or None)", optional=True)
    _whole("batch_size", batch_size, 1)
    _whole("eval_batch_size", eval_batch_size, 1, " (or None: max(batch_size, 256))", optional=True)
    _whole("accumulate", accumulate, 1, " (micro-batches per optimizer step)")
    _whole("num_workers", num_workers, 0)
    _whole("seed", seed, 0)
    _number("lr", lr, True, "the optimizer's default when None")
    _number("weight_decay", weight_decay, False, "the optimizer's default when None")
    _number("clip_norm", clip_norm, True, "the largest global gradient norm")
    if precision not in DTYPES:
        raise ConfigError(f"precision: {precision!r} is not one of {', '.join(DTYPES)} (bf16 and fp16 autocast the forward pass); "
                          "Lightning's 'bf16-mixed' is 'bf16' here, '16-mixed' is 'fp16'")
    if task is not None and task not in DEFAULT_LOSS:
        raise unknown_choice("task", task, DEFAULT_LOSS, "task")
    if isinstance(optimizer, torch.optim.Optimizer):
        ignored = [name for name, value in (("lr", lr), ("weight_decay", weight_decay)) if value is not None]
        if ignored:
            name = type(optimizer).__name__
            by_name = f"optimizer='{name.lower()}'" if name.lower() in OPTIMIZERS else "a registry name"
            raise ConfigError(f"{', '.join(ignored)}: the optimizer passed ({name}) has its own; set them on the optimizer you pass, "
                              f"or pass its name ({by_name}) with them")
    elif isinstance(optimizer, type):
        raise ConfigError(f"optimizer: got the class {optimizer.__name__}; pass an object ({optimizer.__name__}(model.parameters(), ...)) "
                          "or a registry name")
    else:
        OPTIMIZERS.get(str(optimizer), "optimizer")  # one line listing the names
    if isinstance(loss, str):
        LOSSES.get(loss, "loss")
    scheduler = torch.optim.lr_scheduler.LRScheduler
    if isinstance(schedule, scheduler) or (isinstance(schedule, type) and issubclass(schedule, scheduler)):
        name = schedule.__name__ if isinstance(schedule, type) else type(schedule).__name__
        raise ConfigError(f"schedule: a torch LR scheduler ({name}) keeps its own state on its own optimizer and is not supported; "
                          "give a function of the step returning the lr multiplier (schedule=lambda step: ...), a registry name "
                          f"('cosine', 'warmup_cosine', 'onecycle', ...), or record it as a function with "
                          f"steepest.schedules.from_torch(lambda opt: {name}(opt, ...), steps)")
    if isinstance(schedule, str):
        SCHEDULES.get(schedule, "schedule")  # one line listing the names
    elif not callable(schedule):
        raise ConfigError(f"schedule must be a registry name or a function step -> lr multiplier, got {type(schedule).__name__}")
    if early_stopping is not None:
        if not isinstance(early_stopping, Mapping):
            raise ConfigError(f"early_stopping is a dict of EarlyStopping's arguments ({', '.join(EARLY_STOPPING_KEYS)}), "
                              f"e.g. {{'monitor': 'val_loss', 'patience': 5}}; got a {type(early_stopping).__name__}")
        for key in early_stopping:
            if key not in EARLY_STOPPING_KEYS:
                hint = f" did you mean '{_EARLY_STOPPING_ALIASES[key]}'?" if key in _EARLY_STOPPING_ALIASES else did_you_mean(key, EARLY_STOPPING_KEYS)
                raise ConfigError(f"early_stopping: unknown key '{key}';{hint} valid keys: {', '.join(EARLY_STOPPING_KEYS)}")
        if val_data is None:
            raise ConfigError("early_stopping monitors a validation metric: pass val_data (or drop early_stopping)")
    if isinstance(callbacks, Callback):
        raise ConfigError(f"callbacks is a list: callbacks=[{type(callbacks).__name__}(...)]")
    if not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks is a list of steepest Callback objects, got a {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):  # the Trainer calls every event on every callback
            raise ConfigError(f"callbacks: a {type(callback).__name__} is not a steepest Callback; subclass steepest.training.events.Callback "
                              "(it has every event, as no-ops) and override the events you need (`steepest events` lists them)")
    if isinstance(loggers, str):
        raise ConfigError(f"loggers is a list of names: loggers=[{loggers!r}]")
    if loggers and run_dir is None:
        raise ConfigError("loggers write into the run directory: pass run_dir=... (or drop loggers)")
    for name in loggers:
        LOGGERS.get(name, "loggers")


def _form(data: Any) -> str:
    if isinstance(data, DataLoader):
        return "a ready DataLoader"
    if isinstance(data, IterableDataset):
        return "an IterableDataset"
    return "a Dataset" if isinstance(data, Dataset) else "in-memory arrays"


def check_data_arguments(train_data, val_data, test_data, batch_size, eval_batch_size, num_workers, collate_fn, transform) -> None:
    """Arguments that would have no effect on the data given are refused, not ignored (a value
    equal to its default cannot be told from none, and passes)."""
    given = {k: v for k, v in (("train_data", train_data), ("val_data", val_data), ("test_data", test_data)) if v is not None}
    forms = ", ".join(f"{k} is {_form(v)}" for k, v in given.items())
    if transform is not None and not isinstance(train_data, Dataset):
        fix = "apply it in your DataLoader's Dataset" if isinstance(train_data, DataLoader) else "transform the arrays before fit, or wrap them in a Dataset"
        raise ConfigError(f"transform runs on the samples of a Dataset; train_data is {_form(train_data)}: {fix}")
    if isinstance(train_data, DataLoader) and batch_size != DEFAULT_BATCH_SIZE:
        own = f" ({train_data.batch_size} samples)" if train_data.batch_size else ""
        raise ConfigError(f"batch_size: train_data is a ready DataLoader, which makes its own batches{own}; set batch_size on the DataLoader")
    if not any(isinstance(v, Dataset) for v in given.values()):  # nothing is read through fit's own DataLoader
        fix = ("set it on your DataLoader" if any(isinstance(v, DataLoader) for v in given.values())
               else "arrays are batched on the device, with no workers or collate_fn")
        for name, unset in (("num_workers", num_workers == 0), ("collate_fn", collate_fn is None)):
            if not unset:
                raise ConfigError(f"{name} has no effect here: it applies to data given as a Dataset, and {forms}; {fix}")
    held = {k: v for k, v in given.items() if k != "train_data"}
    if eval_batch_size is not None and all(isinstance(v, DataLoader) for v in held.values()):
        why = (f"{' and '.join(held)} {'is a ready DataLoader' if len(held) == 1 else 'are ready DataLoaders'}, which make their own batches"
               if held else "there is no val_data or test_data to evaluate")
        raise ConfigError(f"eval_batch_size has no effect here: {why}")


