"""Parameter groups: no weight decay (and no LARS/LAMB trust-ratio adaptation) for every parameter
with fewer than two dimensions (biases, and the gains of any normalization layer, a user's own
included) and for the parameters of torch's normalization layers, and per-group learning-rate
scales for discriminative fine-tuning. Decaying a gain shrinks the scale a normalization layer
exists to learn, and a trust ratio |w|/|g| of a bias is meaningless (You et al. 2020, LAMB, exclude
both; so do timm's and the Hugging Face Trainer's defaults).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    >>> [len(g["params"]) for g in param_groups(model, weight_decay=0.1)]
    [1, 3]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)


def no_decay_names(model: nn.Module, extra: Iterable[str] = (), decay_1d: bool = False) -> set[str]:
    """Names of the parameters exempt from weight decay: those with fewer than two dimensions
    (unless `decay_1d`), biases, parameters of normalization layers, and any parameter whose name
    contains one of `extra`."""
    names = set()
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            vector = p.dim() < 2 and not decay_1d
            if vector or (pname == "bias" and not decay_1d) or isinstance(module, NORM_TYPES) or any(e in full for e in extra):
                names.add(full)
    return names


def _matches(name: str, key: str) -> bool:
    """A parameter name under a module prefix, or matching an fnmatch pattern."""
    if any(c in key for c in "*?["):
        return fnmatch.fnmatchcase(name, key)
    return name.startswith(key)


def param_groups(model: nn.Module, weight_decay: float = 0.0, *, no_decay: Iterable[str] = (),
                 lr_scale: dict[str, float] | None = None, decay_1d: bool = False) -> list[dict[str, Any]]:
    """Groups for an optimizer: decayed weights, and a no-decay group (`weight_decay=0`, `adapt=False`)
    holding what `no_decay_names` exempts (`decay_1d=True`: vectors and biases are decayed too,
    except in torch's normalization layers).

    `lr_scale` maps a module-name prefix, or an fnmatch pattern ("blocks.*.attn*"), to a multiplier
    of the optimizer's lr (discriminative learning rates: e.g. {"backbone": 0.1}); the longest
    matching key wins. Groups carry
    `lr_scale`, which `create` turns into the group's lr.
    """
    skip = no_decay_names(model, no_decay, decay_1d)
    scales = lr_scale or {}
    buckets: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        prefix = max((k for k in scales if _matches(name, k)), key=len, default=None)
        key = (name in skip, scales[prefix] if prefix is not None else 1.0)
        buckets.setdefault(key, []).append(p)
    groups = []
    for (exempt, scale), params in sorted(buckets.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        group: dict[str, Any] = {"params": params, "lr_scale": scale}
        if exempt:
            group.update(weight_decay=0.0, adapt=False)
        else:
            group["weight_decay"] = weight_decay
        groups.append(group)
    return groups
