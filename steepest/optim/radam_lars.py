"""RAdam with a LARS trust ratio ("Ralamb"), the inner optimizer of RangerLARS (RAdam + LARS + Lookahead).

RAdam (Liu et al. 2020) rectifies Adam's adaptive step while the variance estimate is unreliable:

    rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
    u_t = m_hat * r_t / (sqrt(v_hat) + eps)   if rho_t > 5,   else  u_t = m_hat
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))

then, as in LARS/LAMB, the update is scaled per layer by ||w|| / ||u_t + lambda w|| (1 when a norm is
0; groups with `adapt=False` use 1):   w = w - lr * trust * (u_t + lambda w).
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import StepwiseOptimizer, stacked_norms, trust_ratio


def radam_rectification(step: int, beta2: float) -> float | None:
    """r_t of RAdam, or None while rho_t <= 5 (then the un-adapted momentum is used)."""
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2**step / (1 - beta2**step)
    if rho_t <= 5:
        return None
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


class RAdamLARS(StepwiseOptimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, max_trust: float | None = None, adapt: bool = True, foreach: bool | None = None):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Invalid RAdamLARS hyperparameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "max_trust": max_trust, "adapt": adapt}, foreach)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _ratio(self, group, w_norm, u_norm):
        if not group["adapt"]:
            return torch.ones_like(w_norm)
        ratio = trust_ratio(w_norm, u_norm)
        return ratio if group["max_trust"] is None else ratio.clamp(max=group["max_trust"])

    def _reference(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        rect = radam_rectification(step, beta2)
        for p, g, s in zip(params, grads, states):
            m, v = s["exp_avg"], s["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            if rect is None:
                u = m / bc1
            else:  # (m / bc1) * rect / (sqrt(v / bc2) + eps), folded into one denominator
                denom = v.sqrt().mul_(bc1 / (rect * math.sqrt(bc2))).add_(eps * bc1 / rect)
                u = torch.div(m, denom, out=denom)
            if wd:
                u.add_(p, alpha=wd)
            p.addcmul_(u, self._ratio(group, torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)), value=-lr)

    def _foreach(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], group["lr"]
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        rect = radam_rectification(step, beta2)
        ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        if rect is None:
            u = torch._foreach_div(ms, bc1)
        else:
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, eps)
            u = torch._foreach_div(ms, denom)
            torch._foreach_mul_(u, rect / bc1)
        if wd:
            torch._foreach_add_(u, params, alpha=wd)
        ratios = self._ratio(group, stacked_norms(params), stacked_norms(u))
        torch._foreach_mul_(u, list((lr * ratios).unbind()))
        torch._foreach_sub_(params, u)
