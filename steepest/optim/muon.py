"""Muon (Jordan et al. 2024): momentum orthogonalized by Newton-Schulz iterations, for 2-D weight
matrices, with AdamW for every other parameter (biases, norms, embeddings of other ranks, conv kernels).

For a 2-D weight W with gradient G:   B = mu B + G  (nesterov: G + mu B),   O = NS_5(B) ~ U V^T,
W = W (1 - lr lambda) - lr * sqrt(max(1, rows / cols)) * O.     (torch.optim.Muon, reused here.)

`MuonAdamW` holds a torch.optim.Muon for the matrices and a torch.optim.AdamW for the rest and
exposes their parameter groups as its own, so schedules, GradScaler and checkpoints see one optimizer.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    >>> opt = MuonAdamW(model.parameters(), lr=0.02, adamw_lr=3e-4)   # weights: Muon; biases: AdamW
    >>> model(torch.randn(16, 4)).square().mean().backward(); opt.step()
"""

from __future__ import annotations

from typing import Any

import torch

from steepest.optim.base import init_composite


def _groups(params) -> list[dict[str, Any]]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return [dict(g) for g in params]
    return [{"params": params}]


class MuonAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 weight_decay: float = 0.1, adamw_lr: float = 3e-4, adamw_betas: tuple[float, float] = (0.9, 0.95),
                 adamw_eps: float = 1e-8, adamw_weight_decay: float = 0.0):
        if not hasattr(torch.optim, "Muon"):
            raise ValueError("muon needs torch.optim.Muon (torch >= 2.9)")
        matrix_groups, other_groups = [], []
        for g in _groups(params):
            extra = {k: v for k, v in g.items() if k not in ("params", "lr", "weight_decay")}
            ps = list(g["params"])
            matrices = [p for p in ps if p.ndim == 2]
            others = [p for p in ps if p.ndim != 2]
            if matrices:
                matrix_groups.append({**extra, "params": matrices, "lr": g.get("lr", lr), "weight_decay": g.get("weight_decay", weight_decay)})
            if others:
                other_groups.append({"params": others, "lr": adamw_lr, "weight_decay": adamw_weight_decay})
        self.muon = torch.optim.Muon(matrix_groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                     ns_steps=ns_steps) if matrix_groups else None
        self.adamw = torch.optim.AdamW(other_groups, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                                       weight_decay=adamw_weight_decay) if other_groups else None
        self.defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "adamw_lr": adamw_lr}
        init_composite(self)
        self._sync_groups()

    def _parts(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.muon, self.adamw) if o is not None]

    def _sync_groups(self) -> None:
        self.param_groups = [g for o in self._parts() for g in o.param_groups]

    @property
    def state(self):
        merged = {}
        for o in self._parts():
            merged.update(o.state)
        return merged

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self._parts():
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self._parts():
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict() if self.muon else None, "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.muon is not None:
            self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])
        self._sync_groups()

    def __repr__(self) -> str:
        return f"MuonAdamW(muon={self.muon!r}, adamw={self.adamw!r})"
