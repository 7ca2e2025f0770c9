"""Activation (gradient) checkpointing: keep only the inputs of chosen blocks in the forward pass
and recompute the blocks' insides during the backward pass (Chen et al. 2016, "Training Deep Nets
with Sublinear Memory Cost"). With sqrt(N) segments of N layers, activation memory falls from O(N)
to O(sqrt(N)) for about one extra forward pass.

Blocks keep their names and parameters (the forward is wrapped, the module is not replaced), so
checkpoints and state_dicts are the same with and without it. torch.utils.checkpoint runs with
use_reentrant=False and restores the RNG state, so dropout draws the same masks on recomputation:
gradients equal those of the plain model.

    >>> import torch
    >>> model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()) for _ in range(9)])
    >>> enable_activation_checkpointing(model)
    ['0-2', '3-5', '6-8']
"""

from __future__ import annotations

import fnmatch
import math
import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from steepest.nn.blocks import largest_block_list


def _checkpointed_forward(self, *args, **kwargs):
    """The class's own forward, checkpointed while training (bound to the module, so a deepcopy of
    the model rebinds it to the copy)."""
    inner = type(self).forward.__get__(self)
    if torch.is_grad_enabled() and self.training:
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)
    return inner(*args, **kwargs)


def checkpoint_modules(model: nn.Module, patterns: list[str]) -> list[str]:
    """Checkpoint every submodule whose name matches a pattern (fnmatch, e.g. "encoder.layers.*")."""
    names = [n for n, _ in model.named_modules() if n and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise ValueError(f"no submodule matches {patterns}; the model's top-level modules: {[n for n, _ in model.named_children()]}")
    for name in names:
        module = model.get_submodule(name)
        module.forward = types.MethodType(_checkpointed_forward, module)
    return names


def _run_span(seq: nn.Sequential, start: int, stop: int, x):
    for layer in list(seq.children())[start:stop]:
        x = layer(x)
    return x


def _segmented_forward(self, x):
    use = torch.is_grad_enabled() and self.training
    for start, stop in self.checkpoint_spans:
        x = checkpoint(_run_span, self, start, stop, x, use_reentrant=False) if use else _run_span(self, start, stop, x)
    return x


def checkpoint_sequential_segments(seq: nn.Sequential, segments: int | None = None) -> list[str]:
    """Run `seq` as `segments` checkpointed runs of consecutive children (default: sqrt(len))."""
    n = len(seq)
    segments = max(1, min(n, segments or round(math.sqrt(n))))
    bounds = [round(i * n / segments) for i in range(segments + 1)]
    seq.checkpoint_spans = [(bounds[i], bounds[i + 1]) for i in range(segments) if bounds[i] < bounds[i + 1]]
    seq.forward = types.MethodType(_segmented_forward, seq)
    return [f"{a}-{b - 1}" if b - a > 1 else str(a) for a, b in seq.checkpoint_spans]


def enable_activation_checkpointing(model: nn.Module, spec: bool | int | list[str] = True) -> list[str]:
    """`spec`: True (a Sequential model in sqrt(N) segments; otherwise each block of the model's
    longest Sequential/ModuleList, e.g. a transformer's layers), an int (that many segments of a
    Sequential model), or module-name patterns. Returns what is checkpointed."""
    if isinstance(spec, list):
        return checkpoint_modules(model, spec)
    if isinstance(model, nn.Sequential):
        return checkpoint_sequential_segments(model, None if spec is True else int(spec))
    if spec is not True:
        raise ValueError("an int (segments) applies to Sequential models; give module-name patterns for this model")
    found = largest_block_list(model)
    if found is None:
        raise ValueError("the model has no Sequential/ModuleList of blocks to checkpoint; give module-name patterns")
    name, container = found
    if isinstance(container, nn.ModuleList):
        return checkpoint_modules(model, [f"{name}.{i}" if name else str(i) for i in range(len(container))])
    return [f"{name}[{s}]" for s in checkpoint_sequential_segments(container, None)]
