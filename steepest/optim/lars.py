"""LARS: layer-wise adaptive rate scaling with momentum (You et al. 2017, "Large Batch Training of
Convolutional Networks", Algorithm 1).

    local = eta * ||w|| / (||g|| + lambda * ||w||)      (1 when ||w|| or ||g|| is 0)
    v     = mu * v + lr * local * (g + lambda * w)
    w     = w - v

`trust_coefficient` is eta (paper: 0.001), so the global lr is large (the paper's polynomial
schedules start near 2-10). Options (variants as data): `clip=True` is LARC's trust clipping
(local <- min(local, lr) / lr, so a layer's lr never exceeds the global lr); `max_weight_norm`
clamps ||w||; groups with `adapt=False` (biases, normalization weights; see `param_groups`) use
local = 1; `eps` is added to the denominator.

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = LARS(model.parameters(), lr=2.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=0.001)
    >>> model(torch.randn(8, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, stacked_norms


def local_lr(w_norm, g_norm, *, lr, trust_coefficient, weight_decay, eps, clip, adapt, max_weight_norm):
    """The layer-wise rate eta ||w|| / (||g|| + lambda ||w|| + eps), on the device (no host sync)."""
    if not adapt:
        return torch.ones_like(w_norm)
    if max_weight_norm is not None:
        w_norm = w_norm.clamp(max=max_weight_norm)
    ok = (w_norm > 0) & (g_norm > 0)
    denom = torch.where(ok, g_norm + weight_decay * w_norm + eps, torch.ones_like(g_norm))
    local = torch.where(ok, trust_coefficient * w_norm / denom, torch.ones_like(w_norm))
    return torch.clamp(local / lr, max=1.0) if clip else local


def lars_reference(params, grads, momentum_buffers, *, lr, momentum, weight_decay, **trust):
    for w, g, v in zip(params, grads, momentum_buffers):
        local = local_lr(torch.linalg.vector_norm(w), torch.linalg.vector_norm(g), lr=lr, weight_decay=weight_decay, **trust)
        v.mul_(momentum).add_(lr * local * (g + weight_decay * w))
        w.sub_(v)


def lars_foreach(params, grads, momentum_buffers, *, lr, momentum, weight_decay, **trust):
    local = local_lr(stacked_norms(params), stacked_norms(grads), lr=lr, weight_decay=weight_decay, **trust)
    scale = list((lr * local).unbind())
    if weight_decay:
        d = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_mul_(d, scale)
    else:
        d = torch._foreach_mul(grads, scale)
    torch._foreach_mul_(momentum_buffers, momentum)
    torch._foreach_add_(momentum_buffers, d)
    torch._foreach_sub_(params, momentum_buffers)


class LARS(StepwiseOptimizer):
    state_keys = ("momentum_buffer",)
    reference_step = staticmethod(lars_reference)
    foreach_step = staticmethod(lars_foreach)

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
                 eps: float = 0.0, clip: bool = False, max_weight_norm: float | None = None, adapt: bool = True,
                 foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"Invalid LARS hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                             f"trust_coefficient={trust_coefficient}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "trust_coefficient": trust_coefficient,
                                  "eps": eps, "clip": clip, "max_weight_norm": max_weight_norm, "adapt": adapt}, foreach, impl)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p)}

    def _scalars(self, group, step):
        return dict(lr=group["lr"], momentum=group["momentum"], weight_decay=group["weight_decay"],
                    trust_coefficient=group["trust_coefficient"], eps=group["eps"], clip=group["clip"], adapt=group["adapt"],
                    max_weight_norm=group.get("max_weight_norm"))
