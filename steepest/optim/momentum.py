"""Momentum in the references' exponential-moving-average form (PyTorch's SGD is the other form).

    m_t = beta * m_{t-1} + (1 - beta) * g_t      (m_0 = 0)
    w   = w - lr * m_t            (nesterov: w - lr * (beta * m_t + (1 - beta) * g_t))

The EMA form equals PyTorch's `v = mu v + g` with the lr scaled by (1 - beta), except at the first
steps, where m starts from zero. Weight decay is L2 (added to g).
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer


class EMAMomentum(StepwiseOptimizer):
    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False,
                 foreach: bool | None = None):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"Invalid momentum hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}, foreach)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p)}

    def _reference(self, group, params, grads, states, step):
        beta, wd, lr = group["momentum"], group["weight_decay"], group["lr"]
        for p, g, s in zip(params, grads, states):
            if wd:
                g = torch.add(g, p, alpha=wd)
            m = s["momentum_buffer"]
            m.lerp_(g, 1 - beta)
            p.add_(torch.lerp(g, m, beta) if group["nesterov"] else m, alpha=-lr)

    def _foreach(self, group, params, grads, states, step):
        beta, wd, lr = group["momentum"], group["weight_decay"], group["lr"]
        grads = torch._foreach_add(grads, params, alpha=wd) if wd else grads
        ms = [s["momentum_buffer"] for s in states]
        torch._foreach_mul_(ms, beta)
        torch._foreach_add_(ms, grads, alpha=1 - beta)
        if group["nesterov"]:
            update = torch._foreach_mul(ms, beta)
            torch._foreach_add_(update, grads, alpha=1 - beta)
            torch._foreach_add_(params, update, alpha=-lr)
        else:
            torch._foreach_add_(params, ms, alpha=-lr)


def momentum(params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False,
             dampening: float = 0.0, ema: bool = False, foreach: bool | None = None, fused: bool | None = None):
    """Heavy-ball momentum: PyTorch's form (`v = mu v + (1 - dampening) g`, torch.optim.SGD) or, with
    `ema=True`, the references' EMA form (`m = beta m + (1 - beta) g`)."""
    if ema:
        return EMAMomentum(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, foreach=foreach)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening,
                           foreach=foreach, fused=fused)
