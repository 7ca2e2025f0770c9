"""LAMB: layer-wise adaptive moments (You et al. 2020, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", Algorithm 2 with phi = identity).

    m_t = beta1 m + (1 - beta1) g            v_t = beta2 v + (1 - beta2) g^2
    r_t = (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps) + lambda * w
    w   = w - lr * (phi(||w||) / ||r_t||) * r_t       (trust ratio 1 when either norm is 0)

Options (variants as data): `max_trust` clamps the trust ratio (None: no clamping, as in the paper);
`max_weight_norm` clamps ||w|| (phi(z) = min(z, max_weight_norm), e.g. 10 as in some public
implementations); parameter groups with `adapt=False` (biases and normalization weights, see
`param_groups`) use a trust ratio of 1. Defaults follow the paper: betas=(0.9, 0.999), eps=1e-6,
weight_decay=0.01.

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = Lamb(model.parameters(), lr=1e-3, weight_decay=0.01)
    >>> model(torch.randn(8, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import StepwiseOptimizer, clamped_trust, stacked_norms


def lamb_reference(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                   bias_correction2, adapt, max_trust, max_weight_norm):
    for w, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        r = (m / bias_correction1) / (v.sqrt() / math.sqrt(bias_correction2) + eps)
        if weight_decay:
            r = r + weight_decay * w
        ratio = clamped_trust(torch.linalg.vector_norm(w), torch.linalg.vector_norm(r), adapt, max_trust, max_weight_norm)
        w.sub_(lr * ratio * r)


def lamb_foreach(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                 bias_correction2, adapt, max_trust, max_weight_norm):
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    if isinstance(bias_correction2, torch.Tensor):
        # compiled: adding a 0-d tensor to a list reads it on the host (a graph break); divide instead
        torch._foreach_div_(denom, bias_correction2**0.5)
        torch._foreach_add_(denom, eps)
        r = torch._foreach_div(exp_avgs, denom)
        torch._foreach_div_(r, bias_correction1)
        if weight_decay:
            torch._foreach_add_(r, params, alpha=weight_decay)
    else:
        # m_hat / (sqrt(v_hat) + eps) = (m / (sqrt(v) + eps sqrt(bc2))) * sqrt(bc2) / bc1, and the weight
        # decay term first: r = lambda w, then r += c m / d in one addcdiv (two tensor reads/writes fewer)
        torch._foreach_add_(denom, eps * bias_correction2**0.5)
        c = bias_correction2**0.5 / bias_correction1
        if weight_decay:
            r = torch._foreach_mul(params, weight_decay)
            torch._foreach_addcdiv_(r, exp_avgs, denom, value=c)
        else:
            r = torch._foreach_div(exp_avgs, denom)
            torch._foreach_mul_(r, c)
    ratios = clamped_trust(stacked_norms(params), stacked_norms(r), adapt, max_trust, max_weight_norm)
    torch._foreach_mul_(r, list((lr * ratios).unbind()))
    torch._foreach_sub_(params, r)


class Lamb(StepwiseOptimizer):
    state_keys = ("exp_avg", "exp_avg_sq")
    dynamic_scalars = ("lr", "bias_correction1", "bias_correction2")
    reference_step = staticmethod(lamb_reference)
    foreach_step = staticmethod(lamb_foreach)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, max_trust: float | None = None, max_weight_norm: float | None = None,
                 adapt: bool = True, foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid LAMB hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "max_trust": max_trust, "max_weight_norm": max_weight_norm, "adapt": adapt}, foreach, impl)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    bias_correction1=1 - beta1**step, bias_correction2=1 - beta2**step, adapt=group["adapt"],
                    max_trust=group["max_trust"], max_weight_norm=group.get("max_weight_norm"))
