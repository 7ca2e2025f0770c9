"""AdaHessian (Yao et al. 2021, "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning").

Adam with the squared gradient replaced by a Hutchinson estimate of the Hessian diagonal:

    D   = z * (H z),  z ~ Rademacher             (conv kernels: |D| averaged over spatial dims)
    m_t = beta1 m + (1 - beta1) g                v_t = beta2 v + (1 - beta2) D^2
    w   = w - lr * ( (m_t / (1 - beta1^t)) / ((sqrt(v_t / (1 - beta2^t)))^k + eps) + lambda w )

The Hessian-vector product needs the gradient's graph: train with `loss.backward(create_graph=True)`
(the Trainer does this for optimizers registered with `needs_create_graph`). Defaults from the
paper: lr=0.15, betas=(0.9, 0.999), eps=1e-4, hessian_power k=1. The Rademacher draws come from
the optimizer's own generator, saved in its state_dict, so a resumed run draws the same vectors.
"""

from __future__ import annotations

import math

import torch

from steepest.optim.base import StepwiseOptimizer


class AdaHessian(StepwiseOptimizer):
    def __init__(self, params, lr: float = 0.15, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 0.0, hessian_power: float = 1.0, hessian_every: int = 1, seed: int = 0,
                 foreach: bool | None = None):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not 0 < hessian_power <= 1 or hessian_every < 1:
            raise ValueError(f"Invalid AdaHessian hyperparameters: lr={lr}, eps={eps}, hessian_power={hessian_power}, hessian_every={hessian_every}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "hessian_power": hessian_power, "hessian_every": hessian_every}, foreach)
        self.generator = torch.Generator().manual_seed(seed)

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_hessian_diag_sq": torch.zeros_like(p), "hessian_diag": torch.zeros_like(p)}

    def _grads(self, params):
        grads = [p.grad for p in params]
        if getattr(self, "_fresh", None):
            return grads
        if not any(g.requires_grad for g in grads):
            raise RuntimeError("AdaHessian needs the gradient's graph: call loss.backward(create_graph=True) "
                               "(the Trainer does this when optimizer.name is adahessian)")
        return grads

    def hutchinson_diagonal(self, params, grads) -> list[torch.Tensor]:
        zs = [(torch.randint(0, 2, p.shape, generator=self.generator) * 2 - 1).to(device=p.device, dtype=p.dtype) for p in params]
        live = [i for i, g in enumerate(grads) if g.requires_grad]  # a constant gradient has a zero Hessian row
        with torch.enable_grad():
            found = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[zs[i] for i in live],
                                        retain_graph=False, allow_unused=True)
        hzs = list(found)
        diags = []
        for p, z, hz in zip(params, zs, hzs):
            d = torch.zeros_like(p) if hz is None else (hz * z).detach()
            if d.dim() >= 3:  # convolution kernels: average over the spatial dimensions
                d = d.abs().mean(dim=tuple(range(2, d.dim())), keepdim=True).expand_as(p).clone()
            diags.append(d)
        return diags

    @torch.no_grad()
    def step(self, closure=None):
        # One Hessian-vector product over every group's parameters (the graph can be walked once).
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        first = self.state.get(params[0], {}) if params else {}
        upcoming = int(first["step"]) + 1 if "step" in first else 1
        self._fresh = {}
        if params and (upcoming - 1) % self.param_groups[0]["hessian_every"] == 0:
            self._fresh = dict(zip(params, self.hutchinson_diagonal(params, self._grads(params))))
        try:
            return super().step(closure)
        finally:
            self._fresh = {}

    def _hessian(self, group, params, grads, states, step) -> list[torch.Tensor]:
        for p, s in zip(params, states):
            if p in self._fresh:
                s["hessian_diag"].copy_(self._fresh[p])
        return [s["hessian_diag"] for s in states]

    def _reference(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr, k = group["betas"], group["eps"], group["weight_decay"], group["lr"], group["hessian_power"]
        diags = self._hessian(group, params, grads, states, step)
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        for p, g, s, d in zip(params, grads, states, diags):
            m, v = s["exp_avg"], s["exp_hessian_diag_sq"]
            m.mul_(beta1).add_(g.detach(), alpha=1 - beta1)
            v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
            denom = (v / bc2).sqrt().pow(k) + eps
            p.sub_(lr * ((m / bc1) / denom + wd * p))

    def _foreach(self, group, params, grads, states, step):
        (beta1, beta2), eps, wd, lr, k = group["betas"], group["eps"], group["weight_decay"], group["lr"], group["hessian_power"]
        diags = self._hessian(group, params, grads, states, step)
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        ms, vs = [s["exp_avg"] for s in states], [s["exp_hessian_diag_sq"] for s in states]
        torch._foreach_lerp_(ms, [g.detach() for g in grads], 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, diags, diags, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(bc2))
        if k != 1:
            torch._foreach_pow_(denom, k)
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div(ms, denom)
        torch._foreach_div_(update, bc1)
        if wd:
            torch._foreach_add_(update, params, alpha=wd)
        torch._foreach_add_(params, update, alpha=-lr)

    def state_dict(self):
        state = super().state_dict()
        state["hutchinson_generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        gen = state_dict.pop("hutchinson_generator", None)
        super().load_state_dict(state_dict)
        if gen is not None:
            self.generator.set_state(gen)
