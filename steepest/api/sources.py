"""steepest.fit's data: the user's arrays, Datasets and DataLoaders as the Trainer's loaders and
evaluation sources (their rows checked), and the task guessed from the first batch."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from steepest.config.build import DEFAULT_LOSS
from steepest.data import DataInfo, DeviceLoader, Split
from steepest.data.checks import batch_checker
from steepest.data.stream import IterableLoader, SampleLoader, step_groups, to_device
from steepest.errors import ConfigError, DataError
from steepest.training.batch import batch_size as samples_in
from steepest.training.batch import forward_batch, logits_of, own_loss_of, target_of

# -- loaders ------------------------------------------------------------------------------------------


class _RowsOfBatch(Sequence):
    """How the batch checker names row r of the i-th batch of a DataLoader that does not read in
    order (its sampler knows the Dataset indices, fit does not): "sample r of batch i"."""

    def __init__(self, batch: int):
        self.batch = batch

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, row):
        return f"{row} of batch {self.batch}"


class _ReadyLoader:
    """A user's DataLoader as the Trainer's loader: each epoch is one pass over it, as it is (its
    own sampler and workers). Resuming mid-epoch replays the epoch up to the position. `check(batch,
    rows)` (a `batch_checker`) runs on each batch as it comes, before it moves to the device; rows
    are named by Dataset index when the DataLoader reads in order, else as "r of batch i"."""

    def __init__(self, loader: DataLoader, device: torch.device, float_dtype: torch.dtype | None = None):
        self.loader, self.device, self.float_dtype = loader, device, float_dtype
        self.batch_size = loader.batch_size or 1
        self.check: Callable[[Any, Sequence], None] | None = None
        try:
            self.num_samples = len(loader.dataset)
        except TypeError:
            self.num_samples = 0

    def __len__(self) -> int:
        try:
            return len(self.loader)
        except TypeError:
            raise DataError("a DataLoader over an IterableDataset has no length: give fit max_steps") from None

    def steps_per_epoch(self, accumulate: int = 1) -> int | None:
        try:
            return math.ceil(len(self.loader) / accumulate)
        except TypeError:  # over a stream of unknown length: the run needs max_steps (see step_budget)
            return None

    def _rows(self, i: int) -> Sequence:
        if isinstance(self.loader.sampler, SequentialSampler) and self.loader.batch_size:
            return range(i * self.loader.batch_size, (i + 1) * self.loader.batch_size)
        return _RowsOfBatch(i)

    def batches(self, epoch: int, start: int = 0):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for i, batch in enumerate(self.loader):
            if i >= start:
                if self.check is not None:
                    self.check(batch, self._rows(i))
                yield to_device(batch, self.device, float_dtype=self.float_dtype)

    def steps(self, epoch: int, accumulate: int = 1, start_step: int = 0):
        return step_groups(self.batches(epoch, start_step * accumulate), accumulate)

    def eval_batches(self, batch_size: int | None = None):
        return self.batches(0)


class _CheckedEval:
    """A held-out Dataset or stream read by its loader, whose batches pass `check` (rows named by
    their index in evaluation order) the first time they are read; later evaluations read the
    same samples and skip it (on the device the check costs host syncs)."""

    def __init__(self, loader: SampleLoader | IterableLoader, check: Callable[[Any, Sequence], None], where: str):
        self.loader, self.check, self.checked, self.where = loader, check, False, where

    def eval_batches(self, batch_size: int | None = None) -> Iterator[Any]:
        if self.checked:
            yield from self.loader.eval_batches(batch_size)
            return
        start = 0
        for batch in self.loader.eval_batches(batch_size):
            self.check(batch, range(start, sys.maxsize))
            start += samples_in(batch)
            yield batch
        if start == 0:  # metrics over no samples would read as 0.0
            raise DataError(f"{self.where} has no samples (the stream gave none); give it data, or leave it out")
        self.checked = True

    def close(self) -> None:
        close = getattr(self.loader, "close", None)  # persistent DataLoader workers stop now
        if close is not None:
            close()


def _arrays(data: Sequence, where: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """In-memory (x, y) as tensors, one target per input; floating point inputs in the model's
    `dtype` (numpy's float64 included), refused when that cast would overflow."""
    tensors = []
    for name, value in zip(("inputs", "targets"), data):
        if not isinstance(value, torch.Tensor):
            value = np.asarray(value)
            if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
                raise DataError(f"{where}: {name} must be numeric, got dtype {value.dtype}; encode text or categorical columns as numbers first")
            value = torch.as_tensor(value)
        if value.ndim == 0:
            raise DataError(f"{where}: {name} is a scalar; give one row per sample")
        tensors.append(value)
    x, y = tensors
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} inputs but {len(y)} targets; they must match one to one")
    if len(x) == 0:
        raise DataError(f"{where} has no samples")
    if x.is_floating_point() and x.dtype != dtype:  # float64 arrays (numpy's default) train in the model's dtype
        cast = x.to(dtype)
        overflow = torch.isinf(cast) & torch.isfinite(x)
        if bool(overflow.any()):
            row = int(overflow.reshape(len(x), -1).any(dim=1).nonzero()[0, 0])
            raise DataError(f"{where}: sample {row} has a value beyond the range of {dtype} (the model's dtype); rescale that column or drop the sample")
        x = cast
    return x, y


def class_ids(y: torch.Tensor, info: DataInfo | None) -> torch.Tensor:
    """In-memory class ids given as a column (N, 1) read as (N,), the shape the loss and the metrics take."""
    if getattr(info, "task", None) == "classification" and y.dim() == 2 and y.shape[1] == 1 and not y.is_floating_point():
        return y[:, 0]
    return y


def check_rows(x: torch.Tensor, y: torch.Tensor, info: DataInfo | None, target_key: str, where: str) -> None:
    """Arrays: the batch checker's rules over all rows at once (vectorized: a reduction per tensor)."""
    batch_checker(getattr(info, "task", None), getattr(info, "num_classes", None), target_key, where)((x, y), range(len(x)))


def _known_empty(data: Any) -> bool:
    """A map-style Dataset whose len() is 0 (a stream's length is not known before it is read)."""
    if not isinstance(data, Dataset) or isinstance(data, IterableDataset):
        return False
    try:
        return len(data) == 0
    except TypeError:
        return False


def as_loader(data: Any, batch: int, device: torch.device, seed: int, shuffle: bool, workers: int,
               collate_fn: Callable | None, transform: Callable | None, rank: int = 0, world_size: int = 1,
               dtype: torch.dtype = torch.float32, where: str = "train_data", drop_last: bool = False):
    """Arrays -> DeviceLoader (on the device); a Dataset -> SampleLoader; an IterableDataset ->
    IterableLoader; a DataLoader as it is. Under torchrun each rank takes its share. Floating
    point inputs and targets, in every form, take the model's `dtype`."""
    if _known_empty(data.dataset if isinstance(data, DataLoader) else data):
        raise DataError(f"{where} has no samples (an empty {type(data).__name__}); give it data, or leave it out")
    if isinstance(data, DataLoader):
        return _ReadyLoader(data, device, dtype)
    shards = {"rank": rank, "world_size": world_size}
    if isinstance(data, IterableDataset):
        loader = IterableLoader(data, batch, seed=seed, transform=transform, num_workers=workers, collate_fn=collate_fn,
                                device=device, pin_memory=device.type == "cuda", **shards)
    elif isinstance(data, Dataset):
        loader = SampleLoader(data, batch, shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transform, num_workers=workers,
                              collate_fn=collate_fn, device=device, pin_memory=device.type == "cuda", **shards)
    else:
        loader = None
    if loader is not None:
        loader.float_dtype = dtype  # as arrays: floating point samples (a numpy Dataset's float64) in the model's dtype
        return loader
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _arrays(data, where, dtype)
        return DeviceLoader(x.to(device), y.to(device), batch, shuffle=shuffle, seed=seed, drop_last=drop_last, **shards)
    raise DataError(f"data must be (x, y) arrays or tensors, a torch Dataset, an IterableDataset or a DataLoader; got a {type(data).__name__}")


def eval_source(data: Any, where: str, batch: int, device: torch.device, workers: int, collate_fn, dtype: torch.dtype,
                 info: DataInfo | None, target_key: str, checked: bool, train_shape: tuple[int, ...] | None = None):
    """Held-out data for `Trainer.evaluate`: arrays as a Split (rows checked now; with `train_shape`, the training
    arrays' per-sample shape, theirs must equal it), other forms through a loader whose batches are checked as they
    are read (when `checked`)."""
    loader = as_loader(data, batch, device, 0, False, workers, collate_fn, None, dtype=dtype, where=where)
    if isinstance(loader, DeviceLoader):
        if train_shape is not None and tuple(loader.x.shape[1:]) != train_shape:
            raise DataError(f"{where}: samples have shape {tuple(loader.x.shape[1:])}, but train_data's have {train_shape}; "
                            "give held-out data the same features as the training data")
        y = class_ids(loader.y, info)
        if checked:
            check_rows(loader.x, y, info, target_key, where)
        return Split(loader.x, y)
    if not checked:
        return loader
    check = batch_checker(getattr(info, "task", None), getattr(info, "num_classes", None), target_key, where)
    if isinstance(loader, _ReadyLoader):
        loader.check = check
        return loader
    return _CheckedEval(loader, check, where)


def first_batch(loader) -> Any:
    try:
        return next(iter(loader.batches(0)))
    except StopIteration:
        raise DataError("train_data has no batches") from None


# -- the task -------------------------------------------------------------------------------------------


def _zero_loss(outputs: Any, target: Any) -> torch.Tensor:
    return torch.zeros(())


def _probe(model: nn.Module, first: Any, target_key: str, forward) -> tuple[torch.Tensor, bool]:
    """The model's prediction tensor on the first batch (eval mode, no gradients), through the
    user's `forward` when given, else the batch rule; and whether the output carries its own loss."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            result = forward(model, first, _zero_loss) if forward is not None else forward_batch(model, first, _zero_loss, target_key)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:  # the model's own message, with the batch it was given
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = ("; integer inputs are passed as they are (for embedding layers): give floats (x.float(), scaled as the model "
                "expects, e.g. / 255 for pixels)" if "dtype" in message and _integer_inputs(first, target_key) else "")
        raise DataError(f"the model cannot take train_data's first batch ({_describe(first)}): {type(exc).__name__}: {message}{hint}") from exc
    finally:
        model.train(was)
    if forward is not None and not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise ConfigError(f"forward(model, batch, loss_fn) must return (outputs, loss); it returned a {type(result).__name__}")
    outputs = result[0]
    return logits_of(outputs), own_loss_of(outputs) is not None


def _integer_inputs(batch: Any, target_key: str) -> bool:
    inputs = [v for k, v in batch.items() if k != target_key] if isinstance(batch, dict) else \
        list(batch[:-1]) if isinstance(batch, (tuple, list)) else [batch]
    return any(isinstance(t, torch.Tensor) and not t.is_floating_point() for t in inputs)


def _describe(batch: Any) -> str:
    """A batch's tensors as shape and dtype, e.g. "inputs (64, 8) uint8, target (64,) int64"."""
    def one(t: Any) -> str:
        return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" if isinstance(t, torch.Tensor) else type(t).__name__
    if isinstance(batch, dict):
        return ", ".join(f"{k} {one(v)}" for k, v in batch.items())
    if isinstance(batch, (tuple, list)):
        return ", ".join(f"{'target' if i == len(batch) - 1 else 'inputs'} {one(v)}" for i, v in enumerate(batch))
    return one(batch)


def _check_metric_target(first: Any, target_key: str, task: str) -> None:
    """With a custom forward the metrics still compare the outputs with the batch rule's target:
    the batch's last item, or batch[target_key] for dicts. Class ids are never a 1-d float
    tensor, so such a last item (a per-sample weight put last) is refused for classification."""
    try:
        target = target_of(first, target_key)
    except DataError:
        return  # a batch with no target (the custom step needs none): evaluation has only the loss to report
    if task == "classification" and isinstance(target, torch.Tensor) and target.is_floating_point() and target.ndim == 1:
        raise ConfigError(f"task='classification' with a custom forward: the metrics compare the outputs with the batch's last item "
                          f"(batch[-1], or batch['{target_key}'] for dicts), here a {target.dtype} tensor of shape {tuple(target.shape)}, "
                          "not class ids; put the target last, e.g. (x, w, y)")


def _check_outputs(task: str, why: str, guessed: bool, outputs: torch.Tensor, target: torch.Tensor, labels: torch.Tensor,
                   in_memory: bool) -> None:
    """The model's outputs against the targets, for the task's default loss: one-line ConfigErrors
    that say which task was taken and why (`why`)."""
    width = int(outputs.shape[-1]) if outputs.dim() > 1 else 1
    if task == "classification" and width == 1:
        raise ConfigError("task='classification' needs one model output per class, but the model has 1; "
                          "with one output for two classes pass task='binary' (labels 0/1)")
    if task == "classification" and not in_memory and target.dim() == 2 and target.shape[1] == 1 and not target.is_floating_point():
        raise ConfigError(f"class ids come as a column {tuple(target.shape)}; give one id per sample, shape (N,) "
                          "(y.squeeze(1), or y[:, 0] in the Dataset)")
    if task == "classification" and target.is_floating_point() and target.dim() < outputs.dim():
        raise ConfigError(f"task='classification' needs integer class ids, but the targets are {target.dtype}; pass them as integers (y.long())")
    if guessed and task == "binary" and labels.numel() and not labels.is_floating_point():
        top = int(labels.max())
        if top > 1:
            raise ConfigError(f"{why}, but the labels reach {top}: for {top + 1} classes give the model {top + 1} outputs "
                              "(task='classification'), or pass task= explicitly")
    if task in ("regression", "binary", "multilabel") and len(outputs) and len(target) == len(outputs):
        per_output, per_target = outputs.numel() // len(outputs), target.numel() // len(target)
        if per_output != per_target:
            fix = (f"for class ids pass integer labels (y.long()) or task='classification'; for regression give the model {per_target} output(s)"
                   if guessed and task == "regression" else f"give the model {per_target} output(s), or pass a loss= that takes these shapes")
            raise ConfigError(f"{why}, but the model gives {per_output} outputs per sample for {per_target} target value(s); {fix}")


def task_info(task: str | None, model: nn.Module, first: Any, target_key: str, forward, default_loss: bool,
          labels: torch.Tensor | None = None) -> DataInfo | None:
    """The task and its number of classes. Given, or guessed from the first batch's target (none
    is guessed with a custom `forward`): float targets -> regression; integer ones ->
    classification with one class per model output, or binary when the model has one output. The
    output width is probed on the first batch (through `forward` when given). With the task's
    default loss, outputs that cannot match the targets are refused (`_check_outputs`); `labels`
    are all the training targets when they are in memory (else the first batch's are looked at)."""
    if forward is not None:
        if task is None:
            return None
        _check_metric_target(first, target_key, task)
        target = None
    else:
        target = target_of(first, target_key)
        if task is None and not isinstance(target, torch.Tensor):
            return None
    outputs, own_loss = _probe(model, first, target_key, forward)
    width = int(outputs.shape[-1]) if outputs.dim() > 1 else 1
    guessed = task is None
    if guessed:
        if target.is_floating_point():
            task, why = "regression", f"task: guessed 'regression' because the targets are floating point ({target.dtype})"
        elif target.dim() >= 2 and outputs.dim() == target.dim() + 1 and outputs.shape[:-1] == target.shape:
            task = "language_modeling"  # an id per position and scores per position: a causal LM, token classification
            why = f"task: guessed 'language_modeling' (a cross-entropy per position) because the targets are ids {tuple(target.shape)} " \
                  f"and the model gives scores {tuple(outputs.shape)}"
        else:
            task = "binary" if width == 1 else "classification"
            why = f"task: guessed '{task}' because the targets are integers and the model has {width} output{'s' if width != 1 else ''}"
    else:
        why = f"task={task!r} with its default loss ({DEFAULT_LOSS[task]})"
    if default_loss and not own_loss and isinstance(target, torch.Tensor) and target.ndim >= 1:
        _check_outputs(task, why, guessed, outputs, target, labels if labels is not None else target, labels is not None)
    classes = width if task == "classification" else (2 if task == "binary" else None)
    return DataInfo("python", task, tuple(first[0].shape[1:]) if isinstance(first, (tuple, list)) else (), width, classes)


