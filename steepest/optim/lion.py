"""Lion: EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    c_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
    w_t     = w_{t-1} - lr * (sign(c_t) + lambda * w_{t-1})        (decoupled weight decay)
    m_t     = beta2 * m_{t-1} + (1 - beta2) * g_t

Defaults from the paper: lr=1e-4, betas=(0.9, 0.99). Use a 3-10x smaller lr and a 3-10x larger
weight decay than for AdamW.

    >>> import torch
    >>> opt = Lion(torch.nn.Linear(2, 1).parameters(), lr=1e-4, weight_decay=1.0)
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer


class Lion(StepwiseOptimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 foreach: bool | None = None):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid betas: {betas}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}, foreach)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _reference(self, group, params, grads, states, step):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        for p, g, s in zip(params, grads, states):
            m = s["exp_avg"]
            c = torch.lerp(m, g, 1 - beta1)  # beta1 * m + (1 - beta1) * g
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(c.sign_(), alpha=-lr)
            m.lerp_(g, 1 - beta2)

    def _foreach(self, group, params, grads, states, step):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        ms = [s["exp_avg"] for s in states]
        c = torch._foreach_mul(ms, beta1)
        torch._foreach_add_(c, grads, alpha=1 - beta1)
        torch._foreach_sign_(c)
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, c, alpha=-lr)
        torch._foreach_mul_(ms, beta2)
        torch._foreach_add_(ms, grads, alpha=1 - beta2)
