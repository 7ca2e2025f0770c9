"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training"):
how large a batch can get before more samples stop buying fewer steps.

With G the true gradient and Sigma the per-sample gradient covariance, a batch of B samples has
E|G_B|^2 = |G|^2 + tr(Sigma) / B. Two batch sizes give unbiased estimates:

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

and B_simple = tr(Sigma) / |G|^2, formed as a ratio of (bias-corrected) moving averages of the two
estimates, not as an average of per-draw ratios (which is biased).

Regimes (Shallue et al. 2019, "Measuring the effects of data parallelism"): with McCandlish's steps-to-target
S = S_min (1 + B_noise / B), doubling the batch divides the steps by (1 + b/B) / (1 + b/(2B)),
b = B_simple. Below b/4 that is over 1.67 (of an ideal 2): perfect scaling, where the lr grows
linearly with B; between b/4 and 4b (a 16x band, as wide as Shallue et al.'s 128-2,048 for a CNN on
MNIST): diminishing returns; above 4b under 1.11: stagnation.

    >>> est = estimate_noise_scale(model, loss_fn, sampler_from(x, y), b_small=16, b_big=512)  # doctest: +SKIP
    >>> print(est.summary())  # doctest: +SKIP
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
        lines = [f"gradient noise scale B_simple = {self.b_simple:.1f} (tr Sigma {self.trace_sigma:.3g}, |G|^2 {self.grad_sq:.3g})",
                 f"current batch {self.batch_size}: {self.regime}"]
        if math.isfinite(self.b_simple) and self.b_simple > 0:
            lines.append(f"doubling the batch to {2 * self.batch_size} divides the steps by "
                         f"{doubling_speedup(self.batch_size, self.b_simple):.2f} (ideal 2)")
        rec = f"recommended batch: {self.recommended_batch}"
        if self.recommended_lr is not None:
            rec += f" (linear-scaling lr {self.recommended_lr:.3g} from {self.lr:.3g} at batch {self.batch_size})"
        return "\n".join([*lines, rec])


def doubling_speedup(batch: int, b_simple: float) -> float:
    """How many times fewer steps a batch of 2B needs than B: (1 + b/B) / (1 + b/(2B)), in [1, 2]."""
    return (1 + b_simple / batch) / (1 + b_simple / (2 * batch))


def regime(batch: int, b_simple: float) -> str:
    if batch <= b_simple / 4:
        return "perfect scaling (doubling the batch nearly halves the steps; scale the lr linearly)"
    if batch < 4 * b_simple:
        return "diminishing returns (near the critical batch size)"
    return "stagnation (a larger batch no longer cuts the steps)"


def _grad_sq(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    return float(sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None))


def noise_estimates(g_small, g_big, b_small: int, b_big: int, population: int | None = None):
    """Unbiased (|G|^2, tr Sigma) from squared gradient norms at two batch sizes (floats or tensors).

    E|G_B|^2 = |G|^2 + a_B tr(Sigma) with a_B = 1/B, or, for batches drawn without replacement from
    a training set of N samples (G its full gradient), a_B = (1/B) (N - B) / (N - 1). Two sizes give
    tr(Sigma) = (|G_s|^2 - |G_b|^2) / (a_s - a_b) and |G|^2 = (a_s |G_b|^2 - a_b |G_s|^2) / (a_s - a_b),
    i.e. McCandlish's (B_b |G_b|^2 - B_s |G_s|^2) / (B_b - B_s) when N is infinite."""
    def a(b: int) -> float:
        return 1 / b if population is None or population <= 1 else (population - b) / (b * (population - 1))

    a_s, a_b = a(b_small), a(b_big)
    return (a_s * g_big - a_b * g_small) / (a_s - a_b), (g_small - g_big) / (a_s - a_b)


def estimate_noise_scale(model: nn.Module, loss_fn, sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                         b_small: int = 16, b_big: int = 256, iterations: int = 50, beta: float = 0.9, seed: int = 0,
                         lr: float | None = None, batch_size: int | None = None, population: int | None = None) -> NoiseScale:
    """Estimate B_simple at the model's current parameters; `sample(n, generator)` draws a batch
    (the small batch is the first `b_small` samples of the big one: the expectations, hence the
    estimates, stay unbiased). `population`: the training set's size when batches are drawn from it
    without replacement (finite-population correction; `sampler_from` sets `sample.population`)."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small ({b_small}) < b_big ({b_big})")
    population = population or getattr(sample, "population", None)
    gen = torch.Generator().manual_seed(seed)
    avg_g = avg_s = 0.0
    for _ in range(iterations):
        x, y = sample(b_big, gen)
        g_big = _grad_sq(model, loss_fn, x, y)
        g_small = _grad_sq(model, loss_fn, x[:b_small], y[:b_small])
        grad_sq, trace = noise_estimates(g_small, g_big, b_small, b_big, population)
        avg_g = beta * avg_g + (1 - beta) * grad_sq
        avg_s = beta * avg_s + (1 - beta) * trace
    model.zero_grad(set_to_none=True)
    correction = 1 - beta**iterations  # the EMAs' bias correction (it cancels in the ratio)
    return noise_scale_result(avg_s / correction, avg_g / correction, batch_size or b_small, lr, population)


def noise_scale_result(trace: float, grad_sq: float, batch_size: int, lr: float | None = None,
                       max_batch: int | None = None) -> NoiseScale:
    """B_simple from the two estimates, with the regime of `batch_size`, the recommended batch (the
    power of two nearest B_simple, McCandlish's critical batch, at most `max_batch`) and its
    linear-scaling lr."""
    b = trace / grad_sq if grad_sq > 0 else math.inf
    recommended = 2 ** max(0, round(math.log2(b))) if math.isfinite(b) and b > 0 else batch_size
    if max_batch is not None:
        recommended = min(recommended, max_batch)
    new_lr = lr * recommended / batch_size if lr is not None else None
    return NoiseScale(b, trace, grad_sq, batch_size, int(recommended), regime(batch_size, b), lr, new_lr)


def sampler_from(x: torch.Tensor, y: torch.Tensor):
    """Draw batches (without replacement within a batch) from in-memory tensors."""
    def sample(n: int, gen: torch.Generator):
        idx = torch.randperm(len(x), generator=gen)[:n].to(x.device)
        return x[idx], y[idx]
    sample.population = len(x)
    return sample
