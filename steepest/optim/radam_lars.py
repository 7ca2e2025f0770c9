"""RAdam with a LARS trust ratio ("Ralamb"), the inner optimizer of RangerLARS (RAdam + LARS + Lookahead).

RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond") rectifies Adam's
adaptive step while the variance estimate is unreliable:

    rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
    u_t = m_hat * r_t / (sqrt(v_hat) + eps)   if rho_t > 5,   else  u_t = m_hat
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))

then, as in LARS/LAMB (You et al. 2017, 2020), the update is scaled per layer by
||w|| / ||u_t + lambda w|| (1 when a norm is 0; groups with `adapt=False` use 1):

    w = w - lr * trust * (u_t + lambda w)

No public library ships RangerLARS; this follows the description "LARS + RAdam + Lookahead" with
the LAMB form of the trust ratio. Options: `max_trust`, `max_weight_norm` as in `Lamb`.

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = RAdamLARS(model.parameters(), lr=1e-3)
    >>> model(torch.randn(8, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import StepwiseOptimizer, clamped_trust, stacked_norms


def radam_rectification(step: int, beta2: float) -> float | None:
    """r_t of RAdam, or None while rho_t <= 5 (then the un-adapted momentum is used)."""
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2**step / (1 - beta2**step)
    if rho_t <= 5:
        return None
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


def radam_lars_reference(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                         bias_correction2, rectified, rectification, adapt, max_trust, max_weight_norm):
    for w, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        u = m / bias_correction1
        if rectified:
            u = u * rectification / (v.sqrt() / math.sqrt(bias_correction2) + eps)
        u = u + weight_decay * w
        ratio = clamped_trust(torch.linalg.vector_norm(w), torch.linalg.vector_norm(u), adapt, max_trust, max_weight_norm)
        w.sub_(lr * ratio * u)


def radam_lars_foreach(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                       bias_correction2, rectified, rectification, adapt, max_trust, max_weight_norm):
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    if rectified and weight_decay and not isinstance(bias_correction2, torch.Tensor):
        # u = lambda w + (r_t sqrt(bc2) / bc1) m / (sqrt(v) + eps sqrt(bc2)): one addcdiv (six tensor reads/writes fewer)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denom, eps * bias_correction2**0.5)
        u = torch._foreach_mul(params, weight_decay)
        torch._foreach_addcdiv_(u, exp_avgs, denom, value=rectification * bias_correction2**0.5 / bias_correction1)
    else:  # compiled (0-d tensor scalars: adding one to a list would read it on the host), or no rectification/decay
        u = torch._foreach_div(exp_avgs, bias_correction1)
        if rectified:
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bias_correction2**0.5)
            torch._foreach_add_(denom, eps)
            torch._foreach_mul_(u, rectification)
            torch._foreach_div_(u, denom)
        if weight_decay:
            torch._foreach_add_(u, params, alpha=weight_decay)
    ratios = clamped_trust(stacked_norms(params), stacked_norms(u), adapt, max_trust, max_weight_norm)
    torch._foreach_mul_(u, list((lr * ratios).unbind()))
    torch._foreach_sub_(params, u)


class RAdamLARS(StepwiseOptimizer):
    state_keys = ("exp_avg", "exp_avg_sq")
    dynamic_scalars = ("lr", "bias_correction1", "bias_correction2", "rectification")
    reference_step = staticmethod(radam_lars_reference)
    foreach_step = staticmethod(radam_lars_foreach)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, max_trust: float | None = None, max_weight_norm: float | None = None,
                 adapt: bool = True, foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid RAdamLARS hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "max_trust": max_trust, "max_weight_norm": max_weight_norm, "adapt": adapt}, foreach, impl)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        rect = radam_rectification(step, beta2)
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    bias_correction1=1 - beta1**step, bias_correction2=1 - beta2**step, rectified=rect is not None,
                    rectification=1.0 if rect is None else rect, adapt=group["adapt"], max_trust=group["max_trust"],
                    max_weight_norm=group.get("max_weight_norm"))
