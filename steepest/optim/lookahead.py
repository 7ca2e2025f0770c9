"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), and the
optimizers built on it: Ranger (RAdam + Lookahead) and RangerLARS (RAdam + LARS + Lookahead).

Every k steps of the inner ("fast") optimizer:   slow = slow + alpha * (fast - slow);  fast = slow.

Lookahead wraps any optimizer and shares its parameter groups, so schedules, GradScaler and
parameter-group learning rates work through it unchanged.

    >>> import torch
    >>> inner = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-3)
    >>> opt = Lookahead(inner, k=5, alpha=0.5)
"""

from __future__ import annotations

from typing import Any

import torch

from steepest.optim._registry import OPTIMIZERS
from steepest.optim.base import init_composite
from steepest.optim.radam import RAdam
from steepest.optim.radam_lars import RAdamLARS


class Lookahead(torch.optim.Optimizer):
    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5, foreach: bool | None = None):
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"Invalid Lookahead hyperparameters: k={k} (>= 1), alpha={alpha} (in (0, 1])")
        self.optimizer, self.k, self.alpha = optimizer, k, alpha
        self.foreach = True if foreach is None else foreach
        self.defaults = {**optimizer.defaults, "lookahead_k": k, "lookahead_alpha": alpha}
        self.param_groups = optimizer.param_groups
        self.lookahead_state: dict[str, Any] = {"step": 0, "slow": None}
        init_composite(self)

    @property
    def state(self):  # the inner optimizer's per-parameter state
        return self.optimizer.state

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        if self.lookahead_state["slow"] is None:
            self.lookahead_state["slow"] = [p.detach().clone() for p in self._params()]
        loss = self.optimizer.step(closure)
        self.lookahead_state["step"] += 1
        if self.lookahead_state["step"] % self.k == 0:
            fast, slow = self._params(), self.lookahead_state["slow"]
            if self.foreach:
                torch._foreach_lerp_(slow, fast, self.alpha)
                torch._foreach_copy_(fast, slow)
            else:
                for f, s in zip(fast, slow):
                    s.add_(self.alpha * (f - s))
                    f.copy_(s)
        return loss

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer (torch's pattern for unfreezing layers as training
        goes); its slow weights start at the parameters' values now, and join the next sync."""
        self.optimizer.add_param_group(param_group)
        self.param_groups = self.optimizer.param_groups
        if self.lookahead_state["slow"] is not None:
            self.lookahead_state["slow"] += [p.detach().clone() for p in self.param_groups[-1]["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.optimizer.state_dict(), "lookahead": dict(self.lookahead_state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict["inner"])
        self.param_groups = self.optimizer.param_groups
        la = state_dict["lookahead"]
        slow = la.get("slow")
        self.lookahead_state = {"step": int(la["step"]),
                                "slow": None if slow is None else [s.to(p.device, p.dtype) for s, p in zip(slow, self._params())]}

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, {self.optimizer!r})"


def lookahead(params, base: str = "adamw", k: int = 5, alpha: float = 0.5, **base_kwargs) -> Lookahead:
    """Build `base` (a registered optimizer name) over `params` and wrap it in Lookahead."""
    if base in ("lookahead", "ranger", "rangerlars"):
        raise ValueError(f"lookahead cannot wrap '{base}', which is already a Lookahead optimizer")
    return Lookahead(OPTIMIZERS.build(base, params, **base_kwargs), k=k, alpha=alpha)


def ranger(params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5, weight_decay: float = 0.0,
           k: int = 6, alpha: float = 0.5, foreach: bool | None = None, impl: str | None = None) -> Lookahead:
    """Ranger: RAdam (steepest's, torch.optim.RAdam's update) inside Lookahead, with Ranger's defaults
    (k=6, alpha=0.5, betas=(0.95, 0.999))."""
    inner = RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, impl=impl)
    return Lookahead(inner, k=k, alpha=alpha)


def rangerlars(params, lr: float = 1e-3, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5, weight_decay: float = 0.0,
               max_trust: float | None = None, max_weight_norm: float | None = None, k: int = 6, alpha: float = 0.5,
               foreach: bool | None = None, impl: str | None = None) -> Lookahead:
    """RangerLARS: RAdam with a LARS trust ratio (RAdamLARS) inside Lookahead."""
    inner = RAdamLARS(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_trust=max_trust,
                      max_weight_norm=max_weight_norm, foreach=foreach, impl=impl)
    return Lookahead(inner, k=k, alpha=alpha)
