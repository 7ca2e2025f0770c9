"""One optimizer step, in order: forward/backward per micro-batch (autocast, no_sync), unscale,
inspect, clip, step, zero. Everything a Trainer, a recipe script or a benchmark needs, nothing else.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from steepest.train.precision import autocast, grad_scaler


@dataclass
class StepOutput:
    loss: torch.Tensor  # mean loss over the step's samples, detached, on the device
    grad_norm: torch.Tensor | None  # global gradient norm before clipping (when measured)
    skipped: bool  # True when the loss was non-finite and the optimizer step was skipped


class Engine:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        device: torch.device,
        precision: str = "fp32",
        clip_norm: float | None = None,
        clip_value: float | None = None,
        create_graph: bool = False,
        check_finite: bool = True,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.device, self.precision = device, precision
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.create_graph, self.check_finite = create_graph, check_finite
        self.scaler = grad_scaler(device, precision)
        self.batch_transform: Callable | None = None  # (x, y) -> (x, y), training only
        self.before_optimizer_step: Callable[[], None] = lambda: None
        if create_graph:  # gradients are set to None after every step, which breaks torch's reference cycle
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")

    def _no_sync(self, skip_sync: bool):
        """Skip the gradient sync on all but the last micro-batch of a step (DDP all-reduce, FSDP reduce-scatter)."""
        if not skip_sync:
            return contextlib.nullcontext()
        if hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        if hasattr(self.model, "set_requires_gradient_sync"):
            return _fsdp_no_sync(self.model)
        return contextlib.nullcontext()

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            outputs = self.model(x)
            loss = self.loss_fn(outputs, y)
        return outputs, loss

    def train_step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], measure_grad_norm: bool = False) -> StepOutput:
        total = sum(len(x) for x, _ in batches)
        step_loss = None
        for i, (x, y) in enumerate(batches):
            if self.batch_transform is not None:
                x, y = self.batch_transform(x, y)
            with self._no_sync(i < len(batches) - 1):
                _, loss = self.forward_loss(x, y)
                if loss.dtype in (torch.float16, torch.bfloat16):
                    loss = loss.float()
                weighted = loss * (len(x) / total)  # exact mean over the step's samples
                (self.scaler.scale(weighted) if self.scaler else weighted).backward(create_graph=self.create_graph)
            step_loss = weighted.detach() if step_loss is None else step_loss + weighted.detach()
        # A CPU-GPU sync point: skipping a step needs the answer on the host.
        if self.check_finite and not bool(torch.isfinite(step_loss)):
            self.optimizer.zero_grad(set_to_none=True)
            return StepOutput(step_loss, None, skipped=True)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        self.before_optimizer_step()
        grad_norm = self._clip(measure_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(step_loss, grad_norm, skipped=False)

    def _clip(self, measure: bool) -> torch.Tensor | None:
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.clip_norm is not None:
            return nn.utils.clip_grad_norm_(params, self.clip_norm, foreach=None)
        norm = nn.utils.get_total_norm([p.grad for p in params]) if (measure or self.clip_value) and params else None
        if self.clip_value is not None:
            nn.utils.clip_grad_value_(params, self.clip_value)
        return norm


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
