"""What the checks look at: the recipe's model (fresh copies on demand), data, loss and optimizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from steepest.data.bundle import DataBundle


@dataclass
class DoctorContext:
    make_model: Callable[[], nn.Module]  # a fresh, freshly initialized model (seeded)
    data: DataBundle
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    batch_size: int
    lr: float
    device: torch.device
    loss_name: str = ""
    seed: int = 0

    @property
    def task(self) -> str:
        return self.data.info.task

    def batch(self, n: int | None = None, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        part = getattr(self.data, split)
        n = min(n or self.batch_size, len(part))
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(part), generator=g)[:n].to(part.x.device)
        return part.x[idx], part.y[idx]

    def model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return self.make_model().to(self.device)

    def fit(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float | None = None,
            optimizer: str = "adam", batch: int | None = None) -> list[float]:
        """A few plain steps (Adam unless asked) on (x, y); returns the loss per step."""
        opt = torch.optim.Adam(model.parameters(), lr=lr or 1e-3) if optimizer == "adam" else self.make_optimizer(model)
        if lr is not None and optimizer != "adam":
            for g in opt.param_groups:
                g["lr"] = lr
        model.train()
        losses = []
        gen = torch.Generator().manual_seed(self.seed + 1)
        for _ in range(steps):
            if batch is not None and batch < len(x):
                idx = torch.randint(len(x), (batch,), generator=gen).to(x.device)
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = x, y
            opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(model(xb), yb)
            losses.append(float(loss.detach()))
            if not torch.isfinite(loss):
                break
            loss.backward()
            opt.step()
        return losses

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", inputs: torch.Tensor | None = None) -> float:
        part = getattr(self.data, split)
        model.eval()
        x = part.x if inputs is None else inputs
        loss = float(self.loss_fn(model(x), part.y))
        model.train()
        return loss
