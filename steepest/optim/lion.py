"""Lion: EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    c_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
    w_t     = w_{t-1} - lr * (sign(c_t) + lambda * w_{t-1})        (decoupled weight decay)
    m_t     = beta2 * m_{t-1} + (1 - beta2) * g_t

Defaults from the paper: lr=1e-4, betas=(0.9, 0.99). Use a 3-10x smaller lr and a 3-10x larger
weight decay than for AdamW.

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = Lion(model.parameters(), lr=1e-4, weight_decay=1.0)
    >>> model(torch.randn(4, 2)).sum().backward(); opt.step()
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, add_scaled_


def lion_reference(params, grads, exp_avgs, *, lr, beta1, beta2, weight_decay):
    for w, g, m in zip(params, grads, exp_avgs):
        c = beta1 * m + (1 - beta1) * g
        w.mul_(1 - lr * weight_decay).sub_(lr * torch.sign(c))
        m.lerp_(g, 1 - beta2)


def lion_foreach(params, grads, exp_avgs, *, lr, beta1, beta2, weight_decay):
    c = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
    torch._foreach_sign_(c)
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    add_scaled_(params, c, -lr)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta2)


class Lion(StepwiseOptimizer):
    state_keys = ("exp_avg",)
    reference_step = staticmethod(lion_reference)
    foreach_step = staticmethod(lion_foreach)

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 foreach: bool | None = None, impl: str | None = None):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid betas: {betas}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}, foreach, impl)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"])
