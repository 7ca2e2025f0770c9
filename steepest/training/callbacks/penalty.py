"""L1, L2 and elastic-net weight penalties as a callback: `callbacks: [{name: weight_penalty, l1: 1e-5,
l2: 1e-4}]`. The penalty's gradient is added to each penalized weight's gradient once the step's
gradients are complete (accumulated, all-reduced, unscaled), so it is applied once per optimizer
step whatever the accumulation, the same on every rank, and the logged loss stays the data loss.

    penalty(w) = l1 * sum |w| + l2 * (1/2) sum w^2        gradient: l1 * sign(w) + l2 * w

Convention: `l2` is lambda in (lambda/2) sum w^2 over weights only (biases and normalization parameters
excluded), so lambda equals SGD's weight_decay; a penalty written lambda_2 sum p^2 over all parameters is,
on the weights, l2 = 2 lambda_2.

Biases and normalization parameters are not penalized (`steepest.losses.penalties`). L1 is the
lasso (Tibshirani 1996), both together the elastic net (Zou & Hastie 2005). With plain SGD, l2 is
weight decay; with adaptive optimizers it is not (Loshchilov & Hutter 2019): the L2 gradient is
rescaled by the optimizer like any other, which is why AdamW decouples its decay.
"""

from __future__ import annotations

import torch

from steepest.errors import ConfigError
from steepest.losses.penalties import penalized_parameters
from steepest.training.events import Callback


class WeightPenalty(Callback):
    """Add the gradient of l1 * sum|w| + l2 * (1/2) sum w^2 over the penalized weights (l1, l2 >= 0)."""

    name = "weight_penalty"

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        if not (l1 >= 0 and l2 >= 0) or (l1 == 0 and l2 == 0):
            raise ConfigError(f"weight_penalty: give l1 and/or l2 >= 0, not both 0 (got l1={l1}, l2={l2})")
        self.l1, self.l2 = float(l1), float(l2)
        self.params: list[torch.Tensor] = []

    def on_fit_start(self, trainer) -> None:
        self.params = penalized_parameters(trainer.unwrapped_model)

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if self.l1:
                p.grad.add_(torch.sign(p), alpha=self.l1)
            if self.l2:
                p.grad.add_(p, alpha=self.l2)
