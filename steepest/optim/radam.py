"""RAdam: Adam with a rectified adaptive learning rate (Liu et al. 2020, "On the Variance of the Adaptive
Learning Rate and Beyond"), with the update and the options of torch.optim.RAdam (same hyperparameter
names and defaults).

    g_t     = g_t + lambda * w_{t-1}                 (weight_decay; decoupled_weight_decay=True instead
                                                       multiplies w by 1 - lr * lambda, as in AdamW)
    m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
    v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
    rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
    w_t     = w - lr * r_t * sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(v_t) + eps)   if rho_t > 5
    w_t     = w - lr / (1 - beta1^t) * m_t                                                 otherwise
    r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))

As in torch.optim.RAdam, eps is added to sqrt(v_t), not to the bias-corrected sqrt(v_t / (1 - beta2^t))
(RAdamLARS uses the latter). rho_t, r_t and whether rho_t > 5 depend on the step count only: they are
plain numbers computed once per group and step (`_scalars`), folded into one step size, so the step
reads nothing back from the device. The un-rectified first steps (t <= 4 at beta2 = 0.999) take the
other branch of the list function: under torch.compile that is a second graph, no recompile per step.

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = RAdam(model.parameters(), lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True)
    >>> model(torch.randn(8, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import (
    StepwiseOptimizer,
    adam_moments_,
    adam_moments_foreach_,
    adam_state,
    add_scaled_,
    check_adam_hyperparameters,
)
from steepest.optim.radam_lars import radam_rectification


def radam_reference(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, decoupled, rectified,
                    step_size):
    for w, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        g = adam_moments_(w, g, m, v, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, decoupled=decoupled)
        if rectified:
            w.addcdiv_(m, v.sqrt().add_(eps), value=step_size)
        else:
            w.add_(m, alpha=step_size)


def radam_foreach(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, decoupled, rectified,
                  step_size):
    grads = adam_moments_foreach_(params, grads, exp_avgs, exp_avg_sqs, lr=lr, beta1=beta1, beta2=beta2,
                                  weight_decay=weight_decay, decoupled=decoupled)
    if rectified:
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denom, eps)
        if isinstance(step_size, torch.Tensor):
            # compiled (0-d tensor step size): addcdiv's value= takes numbers only; one fused pass anyway
            torch._foreach_div_(denom, step_size)
            torch._foreach_add_(params, torch._foreach_div(exp_avgs, denom))
        else:
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=step_size)
    else:
        add_scaled_(params, exp_avgs, step_size)


class RAdam(StepwiseOptimizer):
    state_keys = ("exp_avg", "exp_avg_sq")
    dynamic_scalars = ("lr", "step_size")
    reference_step = staticmethod(radam_reference)
    foreach_step = staticmethod(radam_foreach)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, foreach: bool | None = None,
                 impl: str | None = None):
        check_adam_hyperparameters(lr, eps, betas, weight_decay)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay}, foreach, impl)

    def _init_state(self, p, group):
        return adam_state(p)

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        rect = radam_rectification(step, beta2)
        bias_correction1 = 1 - beta1**step
        if rect is None:
            step_size = -lr / bias_correction1
        else:
            step_size = -lr * rect * math.sqrt(1 - beta2**step) / bias_correction1
        return dict(lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    decoupled=group.get("decoupled_weight_decay", False), rectified=rect is not None, step_size=step_size)
