"""One optimizer step, in order: forward/backward per micro-batch (autocast, no_sync), unscale,
inspect, clip, step, zero. Everything a Trainer, a recipe script or a benchmark needs, nothing else.

Accumulation is exact for any loss: micro-batch i's mean loss is weighted by n_i / N, where n_i is
the count the loss divides by (its `normalizer(targets)`: response tokens for a token-mean loss,
the summed class weights of a weighted cross entropy; the label tokens of a Hugging Face model's own
loss on a dict batch; the number of samples for a loss that does not say) and N the sum over the step's micro-batches, and over every rank under DDP/FSDP. So k
micro-batches give the gradient of one batch of all their samples, as the Hugging Face Trainer's
`num_items_in_batch` does. A loss that declares a normalizer must stay finite, with finite
gradients, when its count is 0 (a micro-batch with no response token): torch's cross entropy with
every target ignored does; a hand-written mean should divide by `count.clamp_min(1)`.

A step whose loss is NaN/inf is skipped on the device (`steepest.training.skip`): the flag
`isfinite(loss)` stays a device tensor, the optimizer step runs and is undone where the flag is
False, and `StepOutput.skipped` is that flag negated. Nothing in `train_step` waits for the device
(GradScaler's own inf check under fp16 excepted): the host reads the flag only when it reads the
losses, at log steps. On the CPU, where reading the flag costs nothing, a non-finite step is not
run at all unless `skip_on_device=True`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steepest.errors import ConfigError, DataError
from steepest.training import distributed
from steepest.training.batch import (
    Forward,
    batch_size,
    forward_batch,
    own_loss_normalizer,
    target_of,
)
from steepest.training.distributed import DistContext
from steepest.training.precision import FP16_SECOND_ORDER, autocast, grad_scaler
from steepest.training.skip import DeviceSkip

Batch = Any  # (x, y), (x1, ..., y) or a dict with the target under `target_key` (steepest.training.batch)


@dataclass
class StepOutput:
    loss: torch.Tensor  # mean loss over the step's samples (all ranks), detached, on the device
    grad_norm: torch.Tensor | None  # global gradient norm before clipping (when measured; not finite on a skipped step)
    skipped: torch.Tensor | bool  # 0-d bool on the device: the loss was non-finite and the step changed nothing; False unchecked


def loss_normalizer(loss_fn: Callable, targets: torch.Tensor) -> torch.Tensor | None:
    """The count `loss_fn`'s mean divides by for these targets (`loss_fn.normalizer(targets)`), or
    None when the loss does not say (its mean is over samples)."""
    fn = getattr(loss_fn, "normalizer", None)
    count = None if fn is None else fn(targets)
    return None if count is None else torch.as_tensor(count, dtype=torch.float64)


def _checked(result: Any, source: str) -> tuple[Any, torch.Tensor]:
    """A step's (outputs, loss), or a one-line ConfigError naming the broken contract (plain attribute reads:
    no device work)."""
    if source == "your forward" and not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise ConfigError(f"forward(model, batch, loss_fn) must return (outputs, loss); it returned a {type(result).__name__}")
    loss = result[1]
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"{source} must give a tensor (a 0-d mean over the batch), got a {type(loss).__name__}")
    if loss.numel() != 1:
        raise ConfigError(f"{source} must give one number (a 0-d tensor: the mean over the batch), got a tensor of shape {tuple(loss.shape)}; "
                          "use reduction='mean'")
    return result


class Engine:
    """The optimizer step of `model` under `loss_fn`.

    Hooks are given here, never assigned later: `batch_transform(x, y) -> (x, y)` runs on training
    micro-batches (mixup, augmentation); `before_optimizer_step()` runs once the gradients are
    complete (accumulated, all-reduced, unscaled) and before clipping; `forward(model, batch,
    loss_fn) -> (outputs, loss)` replaces the rule by which a batch becomes a loss
    (`steepest.training.batch.forward_batch`: tuples and dicts, a model's own loss). With
    `check_finite`, a step whose loss is NaN/inf is skipped on the device (see the module
    docstring); `before_optimizer_step` still runs on it (its gradients may then be non-finite).
    Under torch.distributed (`dist`), the skip is decided from the loss of all ranks together, so
    every replica skips the same steps.
    """

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
        skip_on_device: bool | None = None,
        batch_transform: Callable[[torch.Tensor, torch.Tensor], Batch] | None = None,
        before_optimizer_step: Callable[[], None] | None = None,
        dist: DistContext | None = None,
        forward: Forward | None = None,
        target_key: str = "labels",
        cuda_graphs: bool = False,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.device, self.precision = device, precision
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.create_graph = create_graph or bool(getattr(optimizer, "needs_create_graph", False))  # AdaHessian
        self.check_finite = check_finite
        if self.create_graph and precision == "fp16":
            raise ConfigError(FP16_SECOND_ORDER)
        self.batch_transform, self.before_optimizer_step = batch_transform, before_optimizer_step
        self.dist = dist or DistContext()
        self.forward, self.target_key = forward, target_key
        self.cuda_graphs = cuda_graphs
        self.scaler = grad_scaler(device, precision)
        self.micro_batch_weights: list = []  # each micro-batch's share of the last step's loss (see _weights)
        self.skip = DeviceSkip(optimizer, self.scaler, on_device=skip_on_device) if check_finite else None
        if self.create_graph:  # gradients are set to None after every step, which breaks torch's reference cycle
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

    def forward_batch(self, batch: Batch) -> tuple[Any, torch.Tensor]:
        """(outputs, loss) of one batch under autocast, by the Engine's forward rule. With CUDA graphs,
        each forward begins a graph step: the previous replay's outputs (already consumed: the loss is
        computed from them outside the graph, the gradients were used by the optimizer) may be reused."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(self.device, self.precision):
            if self.forward is not None:
                return _checked(self.forward(self.model, batch, self.loss_fn), "your forward")
            return _checked(forward_batch(self.model, batch, self.loss_fn, self.target_key), "the loss")

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """`forward_batch` of an (x, y) batch."""
        return self.forward_batch((x, y))

    def _transform(self, batch: Batch) -> Batch:
        if self.batch_transform is None:
            return batch
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise DataError("a batch transform (mixup, CutMix, augmentation) needs (inputs, target) batches; "
                            "give the transform in the loader for other batches")
        return self.batch_transform(*batch)

    def _count(self, batch: Batch) -> torch.Tensor | None:
        """What the batch's loss is a mean over: a model's own token-mean loss counts its tokens, a
        loss with a `normalizer` says; None (samples) otherwise, and for a custom forward."""
        if self.forward is not None:
            return None
        own = own_loss_normalizer(self.model, batch, self.target_key)
        if own is not None:
            return own.to(torch.float64)
        return loss_normalizer(self.loss_fn, target_of(batch, self.target_key))

    def _weights(self, batches: Sequence[Batch]) -> list:
        """Each micro-batch's share of the step's loss (see the module docstring)."""
        counts = [self._count(b) for b in batches]
        world = self.dist.world_size
        if any(c is None for c in counts):
            sizes = [batch_size(b) for b in batches]
            total = sum(sizes)  # samples: plain numbers, no device work
            if world > 1:
                total = distributed.all_reduce_sum(torch.tensor(float(total), device=self.device))
                return [n * world / total for n in sizes]
            return [n / total for n in sizes]
        counts = [c.to(self.device) for c in counts]
        total = distributed.all_reduce_sum(torch.stack(counts).sum()) if world > 1 else torch.stack(counts).sum()
        return [c * world / total for c in counts]

    def train_step(self, batches: Sequence[Batch], measure_grad_norm: bool = False) -> StepOutput:
        batches = [self._transform(b) for b in batches]
        weights = self._weights(batches)
        self.micro_batch_weights = weights  # read by gradient-measuring callbacks (the noise scale) before the step
        step_loss = None
        for i, (batch, w) in enumerate(zip(batches, weights)):
            with self._no_sync(i < len(batches) - 1):
                _, loss = self.forward_batch(batch)
                if loss.dtype in (torch.float16, torch.bfloat16):
                    loss = loss.float()
                if isinstance(w, torch.Tensor):  # a micro-batch with nothing to count adds nothing (its mean is 0/0)
                    loss = torch.where(w > 0, loss, torch.zeros_like(loss))
                weighted = loss * w
                (self.scaler.scale(weighted) if self.scaler else weighted).backward(create_graph=self.create_graph)
            step_loss = weighted.detach() if step_loss is None else step_loss + weighted.detach()
        if self.dist.world_size > 1:  # every rank sees the global mean, and decides the skip from it
            step_loss = distributed.all_reduce_sum(step_loss) / self.dist.world_size
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.before_optimizer_step is not None:
            self.before_optimizer_step()
        grad_norm = self._clip(measure_grad_norm)
        if self.skip is None:
            self._optimizer_step()
            if self.scaler is not None:
                self.scaler.update()
            skipped = False
        else:
            ok = torch.isfinite(step_loss)  # stays on the device: no host sync
            self.skip.step(ok, self._optimizer_step)
            skipped = ~ok
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(step_loss, grad_norm, skipped)

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    def settle(self) -> None:
        """Finish the bookkeeping of a skipped step that waits for its flag on the host (see
        `DeviceSkip.settle`): call before reading the optimizer's state (checkpoints)."""
        if self.skip is not None:
            self.skip.settle()

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
