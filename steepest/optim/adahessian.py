"""AdaHessian (Yao et al. 2021, "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning").

Adam with the squared gradient replaced by a Hutchinson estimate of the Hessian diagonal:

    D   = z * (H z),  z ~ Rademacher             (conv kernels: |D| averaged over spatial dims)
    m_t = beta1 m + (1 - beta1) g                v_t = beta2 v + (1 - beta2) D^2
    w   = w - lr * ( (m_t / (1 - beta1^t)) / ((sqrt(v_t / (1 - beta2^t)))^k + eps) + lambda w )

The Hessian-vector product needs the gradient's graph: train with `loss.backward(create_graph=True)`
(the Trainer does this for optimizers registered with `needs_create_graph`). Defaults from the
paper: lr=0.15, betas=(0.9, 0.999), eps=1e-4, hessian_power k=1. The Rademacher draws come from
the optimizer's own generator, saved in its state_dict, so a resumed run draws the same vectors.

    >>> import torch
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = AdaHessian(model.parameters(), lr=0.15)
    >>> model(torch.randn(8, 4)).square().mean().backward(create_graph=True); opt.step()
"""

from __future__ import annotations

import torch

from steepest.optim.base import StepwiseOptimizer, add_scaled_


def adahessian_reference(params, grads, exp_avgs, exp_hessian_diag_sqs, hessian_diags, *, lr, beta1, beta2, eps, weight_decay,
                         bias_correction1, bias_correction2, hessian_power):
    for w, g, m, v, d in zip(params, grads, exp_avgs, exp_hessian_diag_sqs, hessian_diags):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        denom = (v.sqrt() / bias_correction2**0.5) ** hessian_power + eps
        w.sub_(lr * ((m / bias_correction1) / denom + weight_decay * w))


def adahessian_foreach(params, grads, exp_avgs, exp_hessian_diag_sqs, hessian_diags, *, lr, beta1, beta2, eps, weight_decay,
                       bias_correction1, bias_correction2, hessian_power):
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_hessian_diag_sqs, beta2)
    torch._foreach_addcmul_(exp_hessian_diag_sqs, hessian_diags, hessian_diags, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_hessian_diag_sqs)
    torch._foreach_div_(denom, bias_correction2**0.5)
    if hessian_power != 1:
        torch._foreach_pow_(denom, hessian_power)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, bias_correction1)
    torch._foreach_div_(update, denom)
    if weight_decay:
        torch._foreach_add_(update, params, alpha=weight_decay)
    add_scaled_(params, update, -lr)


class AdaHessian(StepwiseOptimizer):
    needs_create_graph = True  # read by the Engine: backward(create_graph=True), and no fp16 loss scaling
    state_keys = ("exp_avg", "exp_hessian_diag_sq", "hessian_diag")
    dynamic_scalars = ("lr", "bias_correction1", "bias_correction2")
    reference_step = staticmethod(adahessian_reference)
    foreach_step = staticmethod(adahessian_foreach)

    def __init__(self, params, lr: float = 0.15, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 0.0, hessian_power: float = 1.0, hessian_every: int = 1, seed: int = 0,
                 foreach: bool | None = None, impl: str | None = None):
        if lr < 0 or eps < 0 or weight_decay < 0 or not 0 < hessian_power <= 1 or hessian_every < 1:
            raise ValueError(f"Invalid AdaHessian hyperparameters: lr={lr}, eps={eps}, hessian_power={hessian_power}, "
                             f"hessian_every={hessian_every}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "hessian_power": hessian_power, "hessian_every": hessian_every}, foreach, impl)
        self.generator = torch.Generator().manual_seed(seed)
        self._fresh: dict[torch.Tensor, torch.Tensor] = {}

    def _init_state(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_hessian_diag_sq": torch.zeros_like(p), "hessian_diag": torch.zeros_like(p)}

    def _scalars(self, group, step):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    bias_correction1=1 - beta1**step, bias_correction2=1 - beta2**step, hessian_power=group["hessian_power"])

    def _grads(self, params):
        return [p.grad.detach() for p in params]

    def hutchinson_diagonal(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """z * (H z) per parameter for one Rademacher z (one Hessian-vector product through the gradients' graph)."""
        grads = [p.grad for p in params]
        if not any(g.requires_grad for g in grads):
            raise RuntimeError("AdaHessian needs the gradient's graph: call loss.backward(create_graph=True) "
                               "(the Trainer does this when optimizer.name is adahessian)")
        zs = [(torch.randint(0, 2, p.shape, generator=self.generator) * 2 - 1).to(device=p.device, dtype=p.dtype) for p in params]
        live = [i for i, g in enumerate(grads) if g.requires_grad]  # a constant gradient has a zero Hessian row
        with torch.enable_grad():
            hzs = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[zs[i] for i in live], allow_unused=True)
        diags = []
        for p, z, hz in zip(params, zs, hzs):
            d = torch.zeros_like(p) if hz is None else (hz * z).detach()
            if d.dim() >= 3:  # convolution kernels: average over the spatial dimensions
                d = d.abs().mean(dim=tuple(range(2, d.dim())), keepdim=True).expand_as(p).clone()
            diags.append(d)
        return diags

    @torch.no_grad()
    def step(self, closure=None, *, found_inf=None):
        """One step (a fresh Hessian estimate every `hessian_every` steps); `found_inf` as in
        StepwiseOptimizer.step (parameters and state kept where it is nonzero, no host sync)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # One Hessian-vector product over every group's parameters (the graph is walked once).
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        first = self.state.get(params[0], {}) if params else {}
        done = int(first["step"]) if "step" in first else 0  # a CPU tensor: no device synchronization
        if params and done % self.param_groups[0]["hessian_every"] == 0:
            self._fresh = dict(zip(params, self.hutchinson_diagonal(params)))
        try:
            super().step(found_inf=found_inf)
        finally:
            self._fresh = {}
        return loss

    def _run(self, impl, params, grads, lists, scalars):
        for p, d in zip(params, lists[2]):
            if p in self._fresh:
                d.copy_(self._fresh[p])
        super()._run(impl, params, grads, lists, scalars)

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
