"""Optimizers: the first-order methods of the deep-learning literature, each with its paper, registered by name.

    >>> import torch, steepest.optim as so
    >>> opt = so.create("lamb", torch.nn.Linear(3, 1), lr=1e-3, weight_decay=0.01)
    >>> [g["weight_decay"] for g in opt.param_groups]    # the bias is in a no-decay group
    [0.01, 0.0]
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

from steepest.optim._registry import OPTIMIZERS
from steepest.optim.adahessian import AdaHessian
from steepest.optim.averaging import EMA, SWA
from steepest.optim.lamb import Lamb
from steepest.optim.lars import LARS
from steepest.optim.lion import Lion
from steepest.optim.lookahead import Lookahead
from steepest.optim.momentum import EMAMomentum
from steepest.optim.muon import MuonAdamW
from steepest.optim.nadam import NAdam
from steepest.optim.novograd import NovoGrad
from steepest.optim.param_groups import param_groups
from steepest.optim.radam import RAdam
from steepest.optim.radam_lars import RAdamLARS
from steepest.registry import accepted_arguments


def create(name: str, params_or_model: torch.nn.Module | Iterable[Any], *, lr_scale: dict[str, float] | None = None,
           no_decay: Iterable[str] = (), decay_1d: bool = False, group_params: bool = True,
           **hyperparameters: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as `name`.

    Given a model, every parameter with fewer than two dimensions (biases, normalization gains)
    and the parameters of normalization layers go to a group without weight decay and without
    LARS/LAMB adaptation (`decay_1d=True` decays vectors too; `no_decay` adds name patterns), and
    `lr_scale` sets discriminative learning rates per module prefix; `group_params=False` keeps
    all parameters in one group.
    """
    record = OPTIMIZERS.get(name)
    params: Any = params_or_model
    if isinstance(params_or_model, torch.nn.Module):
        hp = {**record.defaults, **hyperparameters}
        if group_params:
            params = param_groups(params_or_model, hp.get("weight_decay", 0.0), no_decay=no_decay, lr_scale=lr_scale,
                                  decay_1d=decay_1d)
            lr = hp.get("lr")
            for group in params:
                scale = group.pop("lr_scale")
                if lr is not None and scale != 1.0:
                    group["lr"] = lr * scale
        else:
            params = params_or_model.parameters()
    params = list(params)
    return OPTIMIZERS.build(name, params, **_fast_defaults(record.target, params, hyperparameters))


def defaults_of(name: str, base: str | None = None) -> dict[str, Any]:
    """The hyperparameters a registered optimizer uses when not given: its record's defaults over
    its signature's (a wrapper such as lookahead takes those of its `base` optimizer).

    >>> defaults_of("lion")["lr"], defaults_of("adamw")["weight_decay"]
    (0.0001, 0.01)
    """
    record = OPTIMIZERS.get(name)
    params, _ = accepted_arguments(record.target)
    found = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    found.update(record.defaults)
    if "lr" not in params and "base" in found:
        found = {**defaults_of(base or found["base"]), **found}
    return found


def _first_tensor(params: list) -> torch.Tensor | None:
    for item in params:
        if isinstance(item, dict):
            found = _first_tensor(list(item["params"]))
            if found is not None:
                return found
        elif isinstance(item, torch.Tensor):
            return item
    return None


def _fast_defaults(target: Any, params: list, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Pick the fastest implementation the caller did not choose (measured in benchmarks/optim_step.py):
    torch's fused kernels where a class has them (on the CPU about 3x faster than foreach); on the CPU,
    one tensor at a time for torch classes without them (cache reuse beats foreach's full passes)."""
    if "fused" in hyperparameters or "foreach" in hyperparameters:
        return hyperparameters
    first = _first_tensor(params)
    if first is None or not first.is_floating_point():
        return hyperparameters
    accepted, _ = accepted_arguments(target)
    device = first.device.type
    fused_devices = ("cpu",) if target is torch.optim.Adagrad else ("cpu", "cuda")
    if "fused" in accepted and device in fused_devices and not hyperparameters.get("differentiable"):
        return {**hyperparameters, "fused": True}
    if "foreach" in accepted and device == "cpu" and getattr(target, "__module__", "").startswith("torch.optim"):
        return {**hyperparameters, "foreach": False}
    return hyperparameters


__all__ = ["EMA", "LARS", "OPTIMIZERS", "SWA", "AdaHessian", "EMAMomentum", "Lamb", "Lion", "Lookahead", "MuonAdamW",
           "NAdam", "NovoGrad", "RAdam", "RAdamLARS", "create", "defaults_of", "param_groups"]
