"""NAdam: Adam with Nesterov momentum (Dozat 2016, "Incorporating Nesterov Momentum into Adam"), with
the momentum schedule and the options of torch.optim.NAdam (same hyperparameter names and defaults).

    g_t     = g_t + lambda * w_{t-1}                 (weight_decay; decoupled_weight_decay=True instead
                                                       multiplies w by 1 - lr * lambda, as in AdamW)
    mu_t    = beta1 * (1 - 0.5 * 0.96^(t * psi))     (psi = momentum_decay)
    m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
    v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
    d_t     = sqrt(v_t / (1 - beta2^t)) + eps
    w_t     = w - lr * (1 - mu_t) / (1 - prod_{i<=t} mu_i) * g_t / d_t
                - lr * mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m_t / d_t

The product of the mu's is a plain number, the same for every tensor of a group: it is kept in the
param group (`mu_product`, `mu_product_step`) and advanced by one multiplication per step with the
beta1 of that step, as torch.optim.NAdam does per parameter (so a beta1 schedule gives torch's
update), and it is saved and restored with the optimizer's state_dict, so a resumed run equals an
uninterrupted one bit for bit. A group without it (a torch.optim.NAdam checkpoint) recomputes the
product from 1.0 with the group's beta1. torch keeps the product in a tensor of the default dtype
(float32 unless changed); here it is a float64 number. Tensors of a group at different step counts
(one that got its first gradient later) are stepped apart, each count recomputing its product.

The update divides by sqrt(v_t) + eps * sqrt(1 - beta2^t) and folds sqrt(1 - beta2^t) into the two
step sizes, which is d_t above rewritten (one pass over memory fewer).

    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = NAdam(model.parameters(), lr=2e-3, weight_decay=0.01, decoupled_weight_decay=True)
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


def nadam_mu(beta1: float, momentum_decay: float, step: int) -> float:
    """mu_t, the momentum coefficient of step t (torch.optim.NAdam's schedule)."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def nadam_reference(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, decoupled, root,
                    grad_step, avg_step):
    for w, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        g = adam_moments_(w, g, m, v, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, decoupled=decoupled)
        denom = v.sqrt().add_(eps * root)
        w.addcdiv_(g, denom, value=grad_step * root)
        w.addcdiv_(m, denom, value=avg_step * root)


def nadam_foreach(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, decoupled, root,
                  grad_step, avg_step):
    grads = adam_moments_foreach_(params, grads, exp_avgs, exp_avg_sqs, lr=lr, beta1=beta1, beta2=beta2,
                                  weight_decay=weight_decay, decoupled=decoupled)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    if isinstance(root, torch.Tensor):
        # compiled (0-d tensor scalars): adding a 0-d tensor to a list specializes on its value (a recompile
        # per step, wrong results after it in torch 2.13) and addcdiv's value= takes numbers only; one fused pass anyway
        torch._foreach_div_(denom, root)
        torch._foreach_add_(denom, eps)
        u = torch._foreach_mul(grads, grad_step)
        add_scaled_(u, exp_avgs, avg_step)
        torch._foreach_div_(u, denom)
        torch._foreach_add_(params, u)
    else:
        # sqrt(v / bc2) + eps = (sqrt(v) + eps sqrt(bc2)) / sqrt(bc2): one pass fewer than dividing v
        torch._foreach_add_(denom, eps * root)
        torch._foreach_addcdiv_(params, grads, denom, value=grad_step * root)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=avg_step * root)


class NAdam(StepwiseOptimizer):
    state_keys = ("exp_avg", "exp_avg_sq")
    dynamic_scalars = ("lr", "root", "grad_step", "avg_step")
    reference_step = staticmethod(nadam_reference)
    foreach_step = staticmethod(nadam_foreach)

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 foreach: bool | None = None, impl: str | None = None):
        check_adam_hyperparameters(lr, eps, betas, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "momentum_decay": momentum_decay, "decoupled_weight_decay": decoupled_weight_decay,
                                  "mu_product": 1.0, "mu_product_step": 0}, foreach, impl)

    def _init_state(self, p, group):
        return adam_state(p)

    @staticmethod
    def _mu_product(group: dict, mu: float, step: int) -> float:
        """prod_{i<=step} mu_i: the group's product of step - 1 times mu (one multiplication), or, for a
        group without it (the first step, a torch.optim.NAdam checkpoint), the product from 1.0."""
        if group.get("mu_product_step") == step - 1 and group.get("mu_product") is not None:
            product = group["mu_product"] * mu
        else:
            beta1, psi = group["betas"][0], group["momentum_decay"]
            product = 1.0
            for i in range(1, step + 1):
                product *= nadam_mu(beta1, psi, i)
        group["mu_product"], group["mu_product_step"] = product, step
        return product

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        lr, psi = group["lr"], group["momentum_decay"]
        mu, mu_next = nadam_mu(beta1, psi, step), nadam_mu(beta1, psi, step + 1)
        product = self._mu_product(group, mu, step)
        product_next = product * mu_next
        return dict(lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    decoupled=group["decoupled_weight_decay"], root=math.sqrt(1 - beta2**step),
                    grad_step=-lr * (1 - mu) / (1 - product), avg_step=-lr * mu_next / (1 - product_next))
