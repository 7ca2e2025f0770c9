"""LARS: layer-wise adaptive rate scaling with momentum (You et al. 2017, "Large Batch Training of
Convolutional Networks").

    local = eta * ||w|| / (||g|| + lambda * ||w||)      (1 when ||w|| or ||g|| is 0)
    v     = mu * v + lr * local * (g + lambda * w)
    w     = w - v

`trust_coefficient` is eta (paper: 0.001), so the global lr is large (the paper's polynomial
schedules start near 2-10). Options: `clip=True` is LARC's clipping (local <- min(local, lr) / lr,
so the layer lr never exceeds the global lr); groups with `adapt=False` (biases, normalization
weights; see `param_groups`) use local = 1; `eps` is added to the denominator.
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, stacked_norms


def local_lr(w_norm, g_norm, eta: float, wd: float, eps: float) -> torch.Tensor:
    ok = (w_norm > 0) & (g_norm > 0)
    denom = g_norm + wd * w_norm + eps
    return torch.where(ok, eta * w_norm / torch.where(ok, denom, torch.ones_like(denom)), torch.ones_like(w_norm))


class LARS(StepwiseOptimizer):
    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
                 eps: float = 0.0, clip: bool = False, adapt: bool = True, foreach: bool | None = None):
        if lr <= 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"Invalid LARS hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, trust_coefficient={trust_coefficient}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "trust_coefficient": trust_coefficient,
                                  "eps": eps, "clip": clip, "adapt": adapt}, foreach)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p)}

    def _scale(self, group, local: torch.Tensor) -> torch.Tensor:
        if not group["adapt"]:
            return torch.ones_like(local)
        if group["clip"]:
            return torch.clamp(local / group["lr"], max=1.0)
        return local

    def _reference(self, group, params, grads, states, step):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p, g, s in zip(params, grads, states):
            norms = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
            local = self._scale(group, local_lr(*norms, group["trust_coefficient"], wd, group["eps"]))
            v = s["momentum_buffer"]
            v.mul_(mu).addcmul_(torch.add(g, p, alpha=wd) if wd else g, local, value=lr)
            p.sub_(v)

    def _foreach(self, group, params, grads, states, step):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        local = self._scale(group, local_lr(stacked_norms(params), stacked_norms(grads), group["trust_coefficient"], wd, group["eps"]))
        d = torch._foreach_add(grads, params, alpha=wd) if wd else [g.clone() for g in grads]
        torch._foreach_mul_(d, list((lr * local).unbind()))
        vs = [s["momentum_buffer"] for s in states]
        torch._foreach_mul_(vs, mu)
        torch._foreach_add_(vs, d)
        torch._foreach_sub_(params, vs)
