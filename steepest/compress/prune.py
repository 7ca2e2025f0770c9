"""Pruning a model's Linear and Conv weights with `torch.nn.utils.prune`: magnitude (unstructured,
global or per layer) and structured (whole rows / output channels by their L1 or L2 norm).

Unstructured magnitude pruning (Han et al. 2015, "Learning both Weights and Connections for
Efficient Neural Networks") zeroes the weights of smallest |w|: over all prunable layers together
(`scope="global"`: one threshold, so layers with small weights lose more) or the same fraction of
each layer (`scope="layer"`). Structured pruning (Li et al. 2017, "Pruning Filters for Efficient
ConvNets") zeroes whole rows of a Linear weight (output units) or output channels of a Conv weight
(filters), those of smallest ||W_i||_p (p = 1 in the paper), together with their bias entries; the
last prunable layer (the model's outputs) is left whole. A BatchNorm after a pruned channel still
adds its shift: the channel's output is a constant, not removed from the graph.

While pruned, each weight is `weight_orig * weight_mask` (torch's reparametrization: the optimizer
keeps training `weight_orig`, and the masked entries get no gradient through the product);
`make_permanent` (`prune.remove`) writes the zeros into plain parameters before saving, so the
state dict loads into the unpruned architecture.

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> prune_to(model, 0.5)          # half of all 192 weights, the smallest |w| first
    >>> round(sparsity(model), 3)
    0.5
    >>> make_permanent(model); sorted(model[0].state_dict())
    ['bias', 'weight']
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

from steepest.errors import ConfigError

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCOPES = ("global", "layer")


def prunable_layers(model: nn.Module, structured: bool = False) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every Linear and Conv layer, in registration order; for
    structured pruning without the last one (its rows are the model's outputs). ConfigError when
    the model has none to prune."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if structured:
        layers = layers[:-1]
    if not layers:
        kind = "Linear or Conv layers before the output layer" if structured else "Linear or Conv layers"
        raise ConfigError(f"the model has no {kind} to prune")
    return layers


def round_targets(amount: float, rounds: int) -> list[float]:
    """The sparsity after each of `rounds` rounds when each prunes the same fraction
    p = 1 - (1 - amount)^(1/rounds) of the weights still there, reaching `amount` at the last
    (Han et al.'s iterative schedule).

    >>> [round(s, 4) for s in round_targets(0.75, 2)]
    [0.5, 0.75]
    """
    if not 0 < amount < 1:
        raise ConfigError(f"--amount is the final fraction of weights pruned, in (0, 1); got {amount}")
    if rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {rounds}")
    return [1 - (1 - amount) ** (k / rounds) for k in range(1, rounds + 1)]


def _pruned_count(mask) -> int:
    return int((mask == 0).sum())


def prune_to(model: nn.Module, target: float, *, structured: bool = False, scope: str = "global", norm: int = 1) -> None:
    """Prune (torch masks) until `target` of the weights are masked: of all prunable weights together
    (`scope="global"`: round(target * N) of the N weights), of each layer's weights (`"layer"`), or,
    `structured`, of each layer's rows/output channels (round(target * rows), at most rows - 1) by
    their L`norm` norm over the other dimensions, with the bias entries of those rows.

    Masks already on the model count toward the target: only the difference is pruned, chosen among
    the weights still there (torch's PruningContainer), so calling it with a growing `target` is
    iterative pruning. Works in place; the weights become `weight_orig * weight_mask` until
    `make_permanent`. ConfigError for a target outside [0, 1), an unknown scope or norm, or
    structured pruning with `scope="global"` (row norms of different layers are not comparable)."""
    if not 0 <= target < 1:
        raise ConfigError(f"the sparsity to prune to must be in [0, 1), got {target}")
    if scope not in SCOPES:
        raise ConfigError(f"pruning scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if norm not in (1, 2):
        raise ConfigError(f"the structured-pruning norm must be 1 or 2, got {norm}")
    layers = prunable_layers(model, structured)
    if structured:
        if scope == "global":
            raise ConfigError("structured pruning is per layer (row norms of different layers are not comparable); use scope 'layer'")
        for _, module in layers:
            _prune_rows(module, target, norm)
        return
    for _, module in layers:
        if not prune.is_pruned(module) or not hasattr(module, "weight_mask"):
            prune.identity(module, "weight")  # a mask of ones, so every layer is reparametrized alike
    if scope == "global":
        total = sum(m.weight_mask.numel() for _, m in layers)
        already = sum(_pruned_count(m.weight_mask) for _, m in layers)
        more = max(0, round(target * total) - already)
        prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured, amount=more)
    else:
        for _, module in layers:
            more = max(0, round(target * module.weight_mask.numel()) - _pruned_count(module.weight_mask))
            prune.l1_unstructured(module, "weight", amount=more)


def _prune_rows(module: nn.Module, target: float, norm: int) -> None:
    """Structured pruning of one layer's rows (dim 0) up to round(target * rows), then its bias
    entries of the rows that are gone."""
    if not hasattr(module, "weight_mask"):
        prune.identity(module, "weight")
    rows = module.weight_mask.shape[0]
    alive = module.weight_mask.flatten(1).any(dim=1)
    more = max(0, min(round(target * rows), rows - 1) - int((~alive).sum()))
    prune.ln_structured(module, "weight", amount=more, n=norm, dim=0)
    if getattr(module, "bias", None) is not None:
        alive = module.weight_mask.flatten(1).any(dim=1).to(module.weight_mask.dtype)
        if hasattr(module, "bias_mask"):
            prune.remove(module, "bias")  # the earlier rows' zeros are kept; the Parameter stays the same object
        prune.custom_from_mask(module, "bias", alive)


def masks(model: nn.Module) -> dict[str, object]:
    """{qualified tensor name ("0.weight"): its mask (a copy)} of every pruned tensor, to carry the
    pruning over to a rebuilt model (`apply_masks`)."""
    return {f"{name}.{buffer[:-5]}" if name else buffer[:-5]: mask.detach().clone()
            for name, module in model.named_modules() for buffer, mask in module.named_buffers(recurse=False)
            if buffer.endswith("_mask") and prune.is_pruned(module)}


def apply_masks(model: nn.Module, saved: dict[str, object]) -> None:
    """Re-apply masks from `masks` (same architecture) with `prune.custom_from_mask`."""
    modules = dict(model.named_modules())
    for key, mask in saved.items():
        owner, _, tensor = key.rpartition(".")
        prune.custom_from_mask(modules[owner], tensor, mask.to(getattr(modules[owner], tensor).device))


def make_permanent(model: nn.Module) -> None:
    """`prune.remove` on every pruned tensor: plain parameters holding the zeros, no masks, no
    forward pre-hooks; the Parameter objects stay the same (an optimizer built on them still holds them)."""
    for module in model.modules():
        for buffer in [b for b, _ in module.named_buffers(recurse=False) if b.endswith("_mask")]:
            if prune.is_pruned(module):
                prune.remove(module, buffer[:-5])


def sparsity(model: nn.Module, structured: bool = False) -> float:
    """Fraction of zero weights (0..1) over the layers `prunable_layers(model, structured)` names
    (masked or already permanent: the effective weights are read)."""
    layers = prunable_layers(model, structured)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / sum(m.weight.numel() for _, m in layers)


def rows_pruned(model: nn.Module) -> float:
    """Fraction of the rows/output channels (0..1) that are all zero, over the layers structured
    pruning acts on."""
    layers = prunable_layers(model, structured=True)
    dead = sum(int((m.weight.flatten(1) == 0).all(dim=1).sum()) for _, m in layers)
    return dead / sum(m.weight.shape[0] for _, m in layers)
