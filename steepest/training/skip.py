"""Skipping a non-finite optimizer step on the device, without a host sync on the hot path.

The Engine decides a step from `ok = isfinite(loss)`, a 0-d bool tensor on the device (under
torch.distributed the loss is already the mean over all ranks, so every rank holds the same flag).
`DeviceSkip.step(ok, step_fn)` runs the optimizer step whatever the flag, then undoes it where the
flag is False:

    t = where(ok, t_after, t_before)        for every tensor the step may change

(the parameters that have a gradient, their optimizer state, the GradScaler's scale and growth
tracker), from copies taken just before the step into buffers kept between steps. A taken step is
bit-identical to an unguarded one; a skipped one changes no parameter, no state and no step count.
The cost is one copy and one select over those tensors per step, and one more copy of them in
memory (benchmarks/trainer_overhead.py measures it on a GPU). Two kinds of optimizer skip inside
their own kernel instead, at no cost, handed the flag as `optimizer.found_inf` (GradScaler's
mechanism; 1.0 where the step is skipped):
  - torch's fused optimizers (`fused=True`: Adam, AdamW, SGD, Adagrad), which also take back
    their own step count;
  - steepest's own (steepest.optim.base.StepwiseOptimizer: Lamb, LARS, Lion, NAdam, RAdam, ...),
    whose compiled step (the CUDA default) writes where(found_inf == 0, new, old) in the pass
    that computes the update (their foreach and reference steps select with plain ops after the
    step). Their step count is a CPU tensor that advances whatever the flag: it is host-side state,
    restored as below.

What the device cannot undo alone is read on the host:
  - a step that adds optimizer state (the first step; a parameter that gets a gradient later):
    one read on that step, and when the loss was non-finite the new state is removed again;
  - state kept on the host inside `optimizer.state` (Python numbers; the step counts that
    torch.optim's non-fused optimizers and steepest's own keep in CPU tensors while training on
    CUDA): restored one step late, by `settle()`, which runs before the next step and before any
    state is saved. The flag is copied to pinned memory without waiting; when it is read, the next
    step's forward and backward are already queued behind it, so the device is not left idle;
  - an optimizer whose `state_dict()` holds state outside `optimizer.state` (Lookahead's counter
    and slow weights, AdaHessian's Hutchinson generator): the flag is read before every step and a
    non-finite step is not run at all (one host sync per step for these optimizers).

On the CPU the flag already is on the host and reading it costs nothing, so by default
(`on_device=None`) a non-finite step is simply not run there: no copy and no select, which cost
10-17% of a step of the 784-512-256-10 MLP (batch 512) on one CPU core with a non-fused optimizer. `on_device=True` selects on the device on the
CPU too (what the tests of this path run); `on_device=False` always reads the flag on the host.

    >>> p = torch.nn.Parameter(torch.ones(2)); opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    >>> skip = DeviceSkip(opt, on_device=True)
    >>> p.grad = torch.ones(2); skip.step(torch.tensor(True), opt.step); p.detach()
    tensor([0.9000, 0.9000])
    >>> p.grad = torch.full((2,), float("nan")); skip.step(torch.tensor(False), opt.step); p.detach()
    tensor([0.9000, 0.9000])
    >>> opt.state[p]["momentum_buffer"]
    tensor([1., 1.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from steepest.optim.base import StepwiseOptimizer, local_shard


def _leaves(obj: Any) -> int:
    """Values in a state_dict outside its param_groups (None counts for nothing)."""
    if isinstance(obj, dict):
        return sum(_leaves(v) for k, v in obj.items() if k != "param_groups")
    if isinstance(obj, (list, tuple)):
        return sum(_leaves(v) for v in obj)
    return int(obj is not None)


def state_outside(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.state_dict()` holds state that `optimizer.state` does not (Lookahead's
    counter and slow weights, AdaHessian's generator), which no device-side select can restore."""
    return _leaves(optimizer.state_dict()) > sum(len(d) for d in optimizer.state.values())


def _replaced(now: dict | None, before: dict | None) -> bool:
    """Whether a parameter's state dict gained or lost keys, or had a tensor replaced, in a step."""
    if before is None:
        return bool(now)
    return now is None or len(now) != len(before) or any(now.get(k) is not v for k, v in before.items()
                                                         if isinstance(v, torch.Tensor))


class DeviceSkip:
    """Run an optimizer step that leaves everything as it was where the device flag `ok` is False
    (see the module docstring); with `scaler`, `scaler.update()` runs after the step and its scale
    is kept as it was on a skipped step too. `on_device`: select on the device (True), read the flag
    on the host (False), or select on the device unless the flag is on the CPU (None)."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                 on_device: bool | None = None):
        self.optimizer, self.scaler, self.on_device = optimizer, scaler, on_device
        self.outside = state_outside(optimizer)
        self._guarded: list[torch.Tensor] = []  # the tensors selected on the device at the last step
        self._saved: list[torch.Tensor] = []  # their copies before it (buffers reused while the tensors are the same)
        self._pending: tuple | None = None  # (flag, event, host values) of a step whose host-side state awaits its flag
        self._flag: torch.Tensor | None = None  # pinned host copy of the flag (CUDA)
        self._event = None

    def step(self, ok: torch.Tensor, step_fn: Callable[[], Any]) -> None:
        """`step_fn()` (the optimizer step, through the GradScaler when there is one), undone where not `ok`."""
        self.settle()
        read = self.outside or (ok.device.type == "cpu" if self.on_device is None else not self.on_device)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        fused = self.scaler is None and getattr(self.optimizer, "_step_supports_amp_scaling", False)
        # steepest's own take found_inf through a GradScaler too (which, as they are no
        # _step_supports_amp_scaling optimizers, calls their step() without touching the flag)
        own = isinstance(self.optimizer, StepwiseOptimizer)
        scale = [getattr(self.scaler, key, None) for key in ("_scale", "_growth_tracker")]
        guarded, before, host = [t for t in scale if t is not None], [], []
        if not read:
            guarded += self._state(ok, params, fused, own, before, host)
        self._snapshot(guarded)
        pending = self._host_flag(ok) if host else None  # copied now: the flag is ready before the step's kernels run
        if read:
            if bool(ok):  # on the host: free on the CPU; a sync for an optimizer with state the device cannot put back
                step_fn()
        elif fused:
            self.optimizer.grad_scale, self.optimizer.found_inf = None, (~ok).to(torch.float32)
            try:
                step_fn()
            finally:
                del self.optimizer.grad_scale, self.optimizer.found_inf
        elif own:
            self.optimizer.found_inf = (~ok).to(torch.float32)
            try:
                step_fn()
            finally:
                del self.optimizer.found_inf
        else:
            step_fn()
        if self.scaler is not None:
            self.scaler.update()
        self._restore(ok)
        state = self.optimizer.state
        if any(_replaced(state.get(p), old) for p, old in before):
            if not bool(ok):  # a host sync, on the steps that add optimizer state only
                for p, old in before:
                    if (d := state.get(p)) is not None:
                        d.clear()
                        d.update(old or {})
                self._put_back(host)
        elif host:
            self._pending = (*pending, host)

    def _state(self, ok: torch.Tensor, params: list, fused: bool, own: bool, before: list,
               host: list) -> list[torch.Tensor]:
        """The tensors to select on the device: the parameters and their state on `ok`'s device (none
        for a fused optimizer, which skips by itself; for steepest's own, which skip their parameters
        and the state their step writes, `state_keys`, only the rest: their step count when it is on
        `ok`'s device, the CPU). Fills `before` with each parameter's state as it is (to see what the
        step adds) and `host` with the state kept on the host, copied."""
        guarded = [] if fused or own else list(params)
        inside = set(self.optimizer.state_keys) if own else ()
        state = self.optimizer.state
        for p in params:
            d = state.get(p)
            before.append((p, dict(d) if d else None))
            for k, v in (d or {}).items():
                if k in inside and isinstance(v, torch.Tensor):
                    continue
                if isinstance(v, torch.Tensor) and v.device == ok.device:
                    if not fused:
                        guarded.append(v)
                else:
                    host.append((d, k, v.clone() if isinstance(v, torch.Tensor) else v))
        return guarded

    def settle(self) -> None:
        """Put back the host-side state of a skipped step, once its flag is known (a no-op when none waits)."""
        if self._pending is None:
            return
        flag, event, host = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        if not bool(flag):
            self._put_back(host)

    @staticmethod
    def _put_back(host: list) -> None:
        for d, key, value in host:
            d[key] = value

    @torch.no_grad()
    def _snapshot(self, guarded: list[torch.Tensor]) -> None:
        if len(guarded) != len(self._guarded) or any(a is not b for a, b in zip(guarded, self._guarded)):
            self._guarded = guarded
            self._saved = [torch.empty_like(local_shard(t)) for t in guarded]
        if guarded:
            torch._foreach_copy_(self._saved, [local_shard(t) for t in guarded])

    @torch.no_grad()
    def _restore(self, ok: torch.Tensor) -> None:
        for t, saved in zip(self._guarded, self._saved):
            t = local_shard(t)
            torch.where(ok, t, saved, out=t)

    def _host_flag(self, ok: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The flag where the host can read it later: itself on the CPU; on CUDA a pinned copy made
        without waiting, with the event that marks it done."""
        if ok.device.type != "cuda":
            return ok, None
        if self._flag is None:
            self._flag, self._event = torch.empty((), dtype=torch.bool, pin_memory=True), torch.cuda.Event()
        self._flag.copy_(ok, non_blocking=True)
        self._event.record()
        return self._flag, self._event
