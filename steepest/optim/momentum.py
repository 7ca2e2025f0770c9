"""Momentum in its exponential-moving-average form, m = beta m + (1 - beta) g (Adam's first moment,
Kingma & Ba 2015), beside PyTorch SGD's heavy-ball form m = beta m + g (Polyak 1964).

    m_t = beta * m_{t-1} + (1 - beta) * g_t      (m_0 = 0)
    w   = w - lr * m_t            (nesterov: w - lr * (beta * m_t + (1 - beta) * g_t))

The EMA form equals PyTorch's `v = mu v + g` with the lr scaled by (1 - beta) (exactly: both start
from a zero buffer, m_t = (1 - beta) v_t when dampening=0). Weight decay is L2 (added to g).

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = momentum(model.parameters(), lr=0.1, momentum=0.9, ema=True)   # registered as "momentum"
    >>> model(torch.randn(4, 2)).sum().backward(); opt.step()
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, add_scaled_


def ema_momentum_reference(params, grads, momentum_buffers, *, lr, beta, weight_decay, nesterov):
    for w, g, m in zip(params, grads, momentum_buffers):
        g = g + weight_decay * w
        m.lerp_(g, 1 - beta)
        w.sub_(lr * (beta * m + (1 - beta) * g if nesterov else m))


def ema_momentum_foreach(params, grads, momentum_buffers, *, lr, beta, weight_decay, nesterov):
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(momentum_buffers, grads, 1 - beta)
    add_scaled_(params, torch._foreach_lerp(grads, momentum_buffers, beta) if nesterov else momentum_buffers, -lr)


class EMAMomentum(StepwiseOptimizer):
    state_keys = ("momentum_buffer",)
    reference_step = staticmethod(ema_momentum_reference)
    foreach_step = staticmethod(ema_momentum_foreach)

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False,
                 foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"Invalid momentum hyperparameters: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}, foreach, impl)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p)}

    def _scalars(self, group, step):
        return dict(lr=group["lr"], beta=group["momentum"], weight_decay=group["weight_decay"], nesterov=group["nesterov"])


def momentum(params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False,
             dampening: float = 0.0, ema: bool = False, foreach: bool | None = None, fused: bool | None = None,
             impl: str | None = None):
    """Heavy-ball momentum: PyTorch's form (`v = mu v + (1 - dampening) g`, torch.optim.SGD) or, with
    `ema=True`, the EMA form (`m = beta m + (1 - beta) g`, EMAMomentum)."""
    if ema:
        return EMAMomentum(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, foreach=foreach, impl=impl)
    if impl is not None:
        raise ValueError("impl applies to ema=True; torch.optim.SGD takes foreach= or fused=")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening,
                           foreach=foreach, fused=fused)
