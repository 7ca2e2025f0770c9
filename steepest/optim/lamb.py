"""LAMB: layer-wise adaptive moments (You et al. 2020, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", Algorithm 2 with phi = identity).

    m_t = beta1 m + (1 - beta1) g            v_t = beta2 v + (1 - beta2) g^2
    r_t = (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps) + lambda * w
    w   = w - lr * (||w|| / ||r_t||) * r_t       (trust ratio 1 when either norm is 0)

Options: `max_trust` clamps the trust ratio (None: no clamping, as in the paper); parameter groups
with `adapt=False` (biases and normalization weights, see `param_groups`) use a trust ratio of 1.
Defaults follow the paper: betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01.
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import StepwiseOptimizer, stacked_norms, trust_ratio


class Lamb(StepwiseOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, max_trust: float | None = None, adapt: bool = True, foreach: bool | None = None):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid LAMB hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "max_trust": max_trust, "adapt": adapt}, foreach)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _reference(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        for p, g, s in zip(params, grads, states):
            m, v = s["exp_avg"], s["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            # r = (m / bc1) / (sqrt(v / bc2) + eps) + wd * w, with the bias corrections folded into the denominator
            denom = v.sqrt().mul_(bc1 / math.sqrt(bc2)).add_(eps * bc1)
            r = torch.div(m, denom, out=denom)
            if wd:
                r.add_(p, alpha=wd)
            ratio = trust_ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)) if group["adapt"] else torch.ones((), dtype=p.dtype, device=p.device)
            if group["max_trust"] is not None:
                ratio = ratio.clamp(max=group["max_trust"])
            p.addcmul_(r, ratio, value=-lr)

    def _foreach(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, eps)
        r = torch._foreach_div(ms, denom)
        torch._foreach_div_(r, bc1)
        if wd:
            torch._foreach_add_(r, params, alpha=wd)
        if group["adapt"]:
            ratios = trust_ratio(stacked_norms(params), stacked_norms(r))
            if group["max_trust"] is not None:
                ratios = ratios.clamp(max=group["max_trust"])
            torch._foreach_mul_(r, list(ratios.unbind()))
        torch._foreach_add_(params, r, alpha=-lr)
