"""What the checks look at: the recipe's model (fresh copies on demand), data, loss and optimizer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from steepest.data.bundle import DataBundle
from steepest.training.engine import Engine


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
            optimizer: str = "adam", batch: int | None = None, stop: Callable[[], bool] | None = None,
            check_every: int = 25) -> list[float]:
        """Up to `steps` optimizer steps of the training engine (Adam unless `optimizer="recipe"`) on
        (x, y), on random batches of `batch` when given; returns the loss per step. Losses stay on
        the device and are read every `check_every` steps (one sync), when the run also ends early
        on a non-finite loss or once `stop()` is true."""
        opt = torch.optim.Adam(model.parameters(), lr=lr or 1e-3) if optimizer == "adam" else self.make_optimizer(model)
        if lr is not None and optimizer != "adam":
            for g in opt.param_groups:
                g["lr"] = lr
        model.train()
        engine = Engine(model, opt, self.loss_fn, device=self.device, check_finite=False)  # the Trainer's step, no skipping
        losses: list[torch.Tensor] = []
        gen = torch.Generator().manual_seed(self.seed + 1)
        for step in range(1, steps + 1):
            if batch is not None and batch < len(x):
                idx = torch.randint(len(x), (batch,), generator=gen).to(x.device)
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = x, y
            losses.append(engine.train_step([(xb, yb)]).loss)
            if step % check_every == 0 or step == steps:
                if not bool(torch.isfinite(losses[-1])) or (stop is not None and stop()):
                    break
        values = torch.stack(losses).double().tolist() if losses else []
        bad = next((i for i, v in enumerate(values) if v != v or abs(v) == float("inf")), None)
        return values if bad is None else values[: bad + 1]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", inputs: torch.Tensor | None = None) -> float:
        part = getattr(self.data, split)
        model.eval()
        x = part.x if inputs is None else inputs
        loss = float(self.loss_fn(model(x), part.y))
        model.train()
        return loss

    @contextlib.contextmanager
    def threads(self) -> Iterator[None]:
        """One intra-op thread for small models on the CPU: the doctor's batches of a sub-million-
        parameter model make each op a few microseconds, where thread hand-offs cost more than they
        save (measured on 2 busy cores: the default doctor 3-5x faster)."""
        with torch.random.fork_rng(devices=[]):
            small = self.device.type == "cpu" and sum(p.numel() for p in self.make_model().parameters()) < 1_000_000
        before = torch.get_num_threads()
        if small:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
