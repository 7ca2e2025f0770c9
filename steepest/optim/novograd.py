"""NovoGrad: per-layer normalized gradients with layer-wise second moments (Ginsburg et al. 2019,
"Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks").

    v_t = beta2 * v_{t-1} + (1 - beta2) * ||g_t||^2     (v_1 = ||g_1||^2; one scalar per layer)
    m_t = beta1 * m_{t-1} + (g_t / (sqrt(v_t) + eps) + lambda * w)   (m_1 = the bracket)
    w   = w - lr * m_t

With `grad_averaging=True` the bracket is multiplied by (1 - beta1) after the first step, as in
NVIDIA's implementation. Defaults from the paper: betas=(0.95, 0.98).

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = NovoGrad(model.parameters(), lr=1e-2, weight_decay=1e-3)
    >>> model(torch.randn(8, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, add_scaled_, full, stacked_norms


def novograd_reference(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, first, scale):
    for w, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        norm_sq = full(torch.linalg.vector_norm(g)).square()  # the state is per tensor: a plain scalar under FSDP too
        v.copy_(norm_sq if first else beta2 * v + (1 - beta2) * norm_sq)
        d = g / (v.sqrt() + eps) + weight_decay * w
        m.copy_(d if first else beta1 * m + scale * d)
        w.sub_(lr * m)


def novograd_foreach(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, first, scale):
    norm_sq = full(stacked_norms(grads)).square()
    v = norm_sq if first else beta2 * torch.stack(exp_avg_sqs) + (1 - beta2) * norm_sq
    torch._foreach_copy_(exp_avg_sqs, list(v.unbind()))
    d = torch._foreach_div(grads, list((v.sqrt() + eps).unbind()))
    if weight_decay:
        torch._foreach_add_(d, params, alpha=weight_decay)
    if first:  # m starts at zero: m_1 = d (an add, which sharded DTensors support; foreach copy is not)
        torch._foreach_add_(exp_avgs, d)
    else:
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, d, alpha=scale)
    add_scaled_(params, exp_avgs, -lr)


class NovoGrad(StepwiseOptimizer):
    state_keys = ("exp_avg", "exp_avg_sq")
    reference_step = staticmethod(novograd_reference)
    foreach_step = staticmethod(novograd_foreach)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.98), eps: float = 1e-8,
                 weight_decay: float = 0.0, grad_averaging: bool = False, foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid NovoGrad hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "grad_averaging": grad_averaging}, foreach, impl)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros((), dtype=p.dtype, device=p.device)}

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    first=step == 1, scale=(1 - beta1) if group["grad_averaging"] else 1.0)
