"""Sharpness of a minimum: the Hessian's top eigenvalue (power iteration on Hessian-vector products)
and its trace (Hutchinson's estimator, E[z^T H z] with Rademacher z).

Flat minima (small lambda_max and trace) tend to generalize better than sharp ones (Keskar et al. 2017, "On large-batch training").
Gradient descent is stable only while lambda_max < 2 / lr; the edge-of-stability ratio
lambda_max * lr / 2 near 1 means training sits at that edge (Cohen et al. 2021).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def hessian_vector_product(model: nn.Module, loss: torch.Tensor, vectors: list[torch.Tensor], grads=None) -> list[torch.Tensor]:
    params = _params(model)
    grads = grads or torch.autograd.grad(loss, params, create_graph=True)
    return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def top_eigenvalue(model: nn.Module, loss: torch.Tensor, iterations: int = 100, tol: float = 1e-6, seed: int = 0) -> float:
    """The largest-magnitude Hessian eigenvalue by power iteration."""
    params = _params(model)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    norm = torch.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    value = 0.0
    for _ in range(iterations):
        hv = hessian_vector_product(model, loss, v, grads)
        new = float(_dot(hv, v))
        norm = torch.sqrt(_dot(hv, hv))
        if norm == 0:
            return 0.0
        v = [x / norm for x in hv]
        if abs(new - value) <= tol * max(abs(value), 1e-12):
            return new
        value = new
    return value


def hessian_trace(model: nn.Module, loss: torch.Tensor, samples: int = 100, seed: int = 0, chunk: int | None = None) -> float:
    """Hutchinson: tr(H) = E[z^T H z], z with independent +-1 entries; the standard error is
    sqrt(2 (|H|_F^2 - sum_i H_ii^2) / samples). Probes go `chunk` at a time through one batched
    double-backward (`is_grads_batched`; default: as many as fit in 2^22 numbers), falling back to
    one at a time where vmap cannot."""
    params = _params(model)
    chunk = chunk or max(1, 2**22 // max(1, sum(p.numel() for p in params)))
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    total, done = 0.0, 0
    while done < samples:
        n = min(chunk, samples - done)
        z = [(torch.randint(0, 2, (n, *p.shape), generator=gen) * 2 - 1).to(p) for p in params]
        try:
            hz = torch.autograd.grad(grads, params, grad_outputs=z, retain_graph=True, is_grads_batched=True)
            total += float(sum((h * v).sum() for h, v in zip(hz, z)))
        except RuntimeError:  # an op without a batching rule
            for i in range(n):
                zi = [v[i] for v in z]
                total += float(_dot(hessian_vector_product(model, loss, zi, grads), zi))
        done += n
    return total / samples


@dataclass
class Sharpness:
    lambda_max: float
    trace: float
    lr: float | None
    eos_ratio: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = f"top Hessian eigenvalue {self.lambda_max:.4g}, Hessian trace {self.trace:.4g}"
        if self.eos_ratio is not None:
            edge = "at the edge of stability" if self.eos_ratio > 0.8 else "below the edge of stability"
            text += f"\nlambda_max * lr / 2 = {self.eos_ratio:.3g} with lr {self.lr:g} ({edge}; GD diverges along the top direction above 1)"
        return text


def measure_sharpness(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, lr: float | None = None,
                      iterations: int = 100, samples: int = 100, seed: int = 0) -> Sharpness:
    was = model.training
    model.eval()  # dropout off: the Hessian of one fixed function
    try:
        lam = top_eigenvalue(model, loss_fn(model(x), y), iterations, seed=seed)
        tr = hessian_trace(model, loss_fn(model(x), y), samples, seed=seed)
    finally:
        model.train(was)
    return Sharpness(lam, tr, lr, lam * lr / 2 if lr is not None else None)
