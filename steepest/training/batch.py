"""How a batch becomes the model's inputs, its targets and a loss: one rule for every loader.

    (x, y)                 outputs = model(x);              loss = loss_fn(outputs, y)
    (x1, ..., xk, y)       outputs = model(x1, ..., xk);    loss = loss_fn(outputs, y)
    {"labels": y, ...}     outputs = model(**inputs), inputs = the other keys, plus `labels` when the
                           model's forward takes it; when the output carries its own `loss` (a
                           Hugging Face model given labels) that loss is used, else
                           loss_fn(logits, y) with logits = outputs.logits when there is one

The target key is "labels" unless the Trainer is told otherwise. A custom step replaces this
rule: `forward(model, batch, loss_fn) -> (outputs, loss)` given to the Trainer (or the Engine).

    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> outputs, loss = forward_batch(model, (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), torch.nn.functional.cross_entropy)
    >>> outputs.shape, batch_size((torch.zeros(4, 3), torch.zeros(4)))
    (torch.Size([4, 2]), 4)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from steepest.errors import DataError

Forward = Callable[[nn.Module, Any, Callable], tuple[Any, torch.Tensor]]
IGNORE_INDEX = -100  # token labels the loss skips (padding, prompt tokens)


def split_batch(batch: Any, target_key: str = "labels") -> tuple[tuple, dict[str, Any], Any]:
    """(positional inputs, keyword inputs, target) of a batch, by the rule above."""
    if isinstance(batch, dict):
        if target_key not in batch:
            raise DataError(f"a dict batch needs its target under '{target_key}' (found {', '.join(map(str, batch)) or 'no keys'}); "
                            "name the target key, or give a forward function for a custom step")
        return (), {k: v for k, v in batch.items() if k != target_key}, batch[target_key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return tuple(batch[:-1]), {}, batch[-1]
    raise DataError(f"a batch must be (inputs, target), (input1, ..., target) or a dict with '{target_key}'; got a "
                    f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")


def batch_size(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    values = list(batch.values()) if isinstance(batch, dict) else list(batch) if isinstance(batch, (tuple, list)) else []
    for value in values:
        if isinstance(value, (torch.Tensor, dict, tuple, list)):
            return batch_size(value)
    raise DataError(f"cannot tell how many samples a {type(batch).__name__} batch holds: it has no tensor")


def _takes_labels(model: nn.Module, key: str) -> bool:
    module = getattr(model, "module", model)  # DDP
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def forward_batch(model: nn.Module, batch: Any, loss_fn: Callable, target_key: str = "labels") -> tuple[Any, torch.Tensor]:
    """The default step's forward: (outputs, loss) of `batch` (see the module docstring)."""
    args, kwargs, target = split_batch(batch, target_key)
    if kwargs and _takes_labels(model, target_key):
        kwargs = {**kwargs, target_key: target}
    outputs = model(*args, **kwargs)
    own = own_loss_of(outputs)
    if own is not None:
        return outputs, own
    return outputs, loss_fn(logits_of(outputs), target)


def own_loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss a model's output carries: its `.loss` (Hugging Face) or a dict's "loss"; None for a tensor or tuple."""
    if isinstance(outputs, torch.Tensor):
        return None
    own = getattr(outputs, "loss", None)
    return outputs.get("loss") if own is None and isinstance(outputs, dict) else own


def logits_of(outputs: Any) -> torch.Tensor:
    """The prediction tensor of a model's output: itself, or its `.logits` (Hugging Face) or a dict's "logits", or
    the first item of a tuple."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, dict):
        logits = outputs.get("logits")
    if logits is not None:
        return logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise DataError(f"the model returned a {type(outputs).__name__}; return a tensor (or an object or dict with logits) or give a forward function")


def own_loss_normalizer(model: nn.Module, batch: Any, target_key: str = "labels") -> torch.Tensor | None:
    """The count a model's own token-mean loss divides by, for a dict batch whose target is token
    labels (B, L) of a model that takes them: the labels that are not -100, less each sequence's
    first one when the model shifts labels inside its loss (a Hugging Face decoder-only LM:
    `can_generate()` and not encoder-decoder). None for other batches (their loss is a mean over
    samples). The Engine weights accumulated micro-batches by it, so micro-batches with different
    token counts add up to the big batch's loss (as the Hugging Face Trainer's `num_items_in_batch`)."""
    if not isinstance(batch, dict):
        return None
    labels = batch.get(target_key)
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.ndim < 2 or not _takes_labels(model, target_key):
        return None
    if _shifts_labels(model):
        labels = labels[..., 1:]
    return (labels != IGNORE_INDEX).sum()


def _shifts_labels(model: nn.Module) -> bool:
    module = getattr(model, "module", model)  # DDP
    config = getattr(module, "config", None)
    can_generate = getattr(module, "can_generate", None)
    try:
        return config is not None and not getattr(config, "is_encoder_decoder", False) and callable(can_generate) and bool(can_generate())
    except Exception:  # noqa: BLE001 - a model whose can_generate needs more than itself: assume no shift
        return False


def target_of(batch: Any, target_key: str = "labels") -> Any:
    return split_batch(batch, target_key)[2]
