"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training"):
how large a batch can get before more samples stop buying fewer steps.

With G the true gradient and Sigma the per-sample gradient covariance, a batch of B samples has
E|G_B|^2 = |G|^2 + tr(Sigma) / B. Two batch sizes give unbiased estimates:

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

and B_simple = tr(Sigma) / |G|^2, formed as a ratio of (bias-corrected) moving averages of the two
estimates, not as an average of per-draw ratios (which is biased). Regimes, as in the references:
B << B_simple: perfect scaling (doubling B halves the steps); B ~ B_simple: diminishing returns;
B >> B_simple: stagnation (more samples per step, no fewer steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class NoiseScale:
    b_simple: float
    trace_sigma: float
    grad_sq: float
    batch_size: int
    recommended_batch: int
    regime: str
    lr: float | None = None
    recommended_lr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = (f"gradient noise scale B_simple = {self.b_simple:.1f} (tr Sigma {self.trace_sigma:.3g}, |G|^2 {self.grad_sq:.3g})\n"
                f"current batch {self.batch_size}: {self.regime}\nrecommended batch: {self.recommended_batch}")
        if self.recommended_lr is not None:
            text += f"  (linear-scaling lr {self.recommended_lr:.3g} from {self.lr:.3g})"
        return text


def regime(batch: int, b_simple: float) -> str:
    if batch <= b_simple / 10:
        return "perfect scaling (a larger batch cuts the steps almost proportionally)"
    if batch <= 10 * b_simple:
        return "diminishing returns (near the critical batch size)"
    return "stagnation (a larger batch no longer cuts the steps)"


def _grad_sq(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    return float(sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None))


def estimate_noise_scale(model: nn.Module, loss_fn, sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                         b_small: int = 16, b_big: int = 256, iterations: int = 50, beta: float = 0.9, seed: int = 0,
                         lr: float | None = None, batch_size: int | None = None) -> NoiseScale:
    """Estimate B_simple at the model's current parameters; `sample(n, generator)` draws a batch."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small ({b_small}) < b_big ({b_big})")
    gen = torch.Generator().manual_seed(seed)
    avg_g = avg_s = 0.0
    for _ in range(iterations):
        x, y = sample(b_big, gen)
        g_big = _grad_sq(model, loss_fn, x, y)
        g_small = _grad_sq(model, loss_fn, x[:b_small], y[:b_small])
        grad_sq = (b_big * g_big - b_small * g_small) / (b_big - b_small)
        trace = (g_small - g_big) / (1 / b_small - 1 / b_big)
        avg_g = beta * avg_g + (1 - beta) * grad_sq
        avg_s = beta * avg_s + (1 - beta) * trace
    correction = 1 - beta**iterations
    grad_sq, trace = avg_g / correction, avg_s / correction
    model.zero_grad(set_to_none=True)
    b = trace / grad_sq if grad_sq > 0 else math.inf
    current = batch_size or b_small
    recommended = 2 ** max(0, round(math.log2(b))) if math.isfinite(b) and b > 0 else current
    new_lr = lr * recommended / current if lr is not None else None
    return NoiseScale(b, trace, grad_sq, current, int(recommended), regime(current, b), lr, new_lr)


def sampler_from(x: torch.Tensor, y: torch.Tensor):
    """Draw batches (without replacement within a batch) from in-memory tensors."""
    def sample(n: int, gen: torch.Generator):
        idx = torch.randperm(len(x), generator=gen)[:n].to(x.device)
        return x[idx], y[idx]
    return sample
