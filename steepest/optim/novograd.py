"""NovoGrad: per-layer normalized gradients with layer-wise second moments (Ginsburg et al. 2019,
"Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks").

    v_t = beta2 * v_{t-1} + (1 - beta2) * ||g_t||^2     (v_1 = ||g_1||^2; one scalar per layer)
    m_t = beta1 * m_{t-1} + (g_t / (sqrt(v_t) + eps) + lambda * w)   (m_1 = the bracket)
    w   = w - lr * m_t

With `grad_averaging=True` the bracket is multiplied by (1 - beta1), as in NVIDIA's implementation.
Defaults from the paper: betas=(0.95, 0.98).
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, stacked_norms


class NovoGrad(StepwiseOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.98), eps: float = 1e-8,
                 weight_decay: float = 0.0, grad_averaging: bool = False, foreach: bool | None = None):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid NovoGrad hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "grad_averaging": grad_averaging}, foreach)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros((), dtype=p.dtype, device=p.device)}

    def _reference(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        scale = (1 - beta1) if group["grad_averaging"] and step > 1 else 1.0
        for p, g, s in zip(params, grads, states):
            sq = torch.linalg.vector_norm(g).square()
            v = s["exp_avg_sq"]
            if step == 1:
                v.copy_(sq)
            else:
                v.mul_(beta2).add_(sq, alpha=1 - beta2)
            m = s["exp_avg"]  # zero before the first step, so m_1 = d_1
            m.mul_(beta1).addcdiv_(g, v.sqrt().add_(eps), value=scale)
            if wd:
                m.add_(p, alpha=wd * scale)
            p.add_(m, alpha=-lr)

    def _foreach(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        sq = stacked_norms(grads).pow(2)
        old = torch.stack([s["exp_avg_sq"] for s in states])
        v = sq if step == 1 else beta2 * old + (1 - beta2) * sq
        torch._foreach_copy_([s["exp_avg_sq"] for s in states], list(v.unbind()))
        d = torch._foreach_div(grads, list((v.sqrt() + eps).unbind()))
        if wd:
            torch._foreach_add_(d, params, alpha=wd)
        if group["grad_averaging"] and step > 1:
            torch._foreach_mul_(d, 1 - beta1)
        ms = [s["exp_avg"] for s in states]
        if step == 1:
            torch._foreach_copy_(ms, d)
        else:
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, d)
        torch._foreach_add_(params, ms, alpha=-lr)
