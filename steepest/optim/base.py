"""The base class for steepest's own optimizers: one readable reference step per tensor, one fast
step over lists of tensors (torch._foreach_*), chosen per parameter group.

Subclasses implement `_init_state(p, group)`, `_reference(group, params, grads, states, step)`
and `_foreach(group, params, grads, states, step)`. `step` is the group's step count as a Python
int, kept in a CPU tensor (`state["step"]`, as torch.optim does), so bias corrections never
wait for the GPU. Norms and trust ratios stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class StepwiseOptimizer(torch.optim.Optimizer):
    def __init__(self, params, defaults: dict[str, Any], foreach: bool | None = None):
        super().__init__(params, {**defaults, "foreach": foreach})

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        return {}

    def _reference(self, group, params, grads, states, step: int) -> None:
        raise NotImplementedError

    def _foreach(self, group, params, grads, states, step: int) -> None:
        raise NotImplementedError

    def _grads(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        return grads

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state.update(self._init_state(p, group))
                state["step"] += 1
                states.append(state)
            step = int(states[0]["step"])  # a CPU tensor: no device synchronization
            grads = self._grads(params)
            # Default: lists of tensors on accelerators; on the CPU one tensor at a time, which keeps each
            # tensor in cache across the update's operations (measured faster: benchmarks/optim_step.py).
            use_foreach = group["foreach"] if group["foreach"] is not None else params[0].device.type != "cpu"
            (self._foreach if use_foreach else self._reference)(group, params, grads, states, step)
        return loss


def init_composite(optimizer: torch.optim.Optimizer) -> None:
    """The bookkeeping torch.optim.Optimizer.__init__ would do, for optimizers built around other
    optimizers (Lookahead, MuonAdamW) that share their parameter groups instead of owning them."""
    for hooks in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks", "_optimizer_state_dict_pre_hooks",
                  "_optimizer_state_dict_post_hooks", "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks"):
        setattr(optimizer, hooks, {})


def trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor) -> torch.Tensor:
    """||w|| / ||u||, and 1 where either norm is zero (the LARS/LAMB convention); no host sync."""
    ok = (w_norm > 0) & (u_norm > 0)
    return torch.where(ok, w_norm / torch.where(ok, u_norm, torch.ones_like(u_norm)), torch.ones_like(w_norm))


def stacked_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor L2 norms as one vector (one foreach kernel, then a stack)."""
    return torch.stack(torch._foreach_norm(tensors))
