"""The base class for steepest's own optimizers: the math of one step written twice, once per tensor
(the readable reference) and once over lists of tensors (torch._foreach_*), and run one of three ways:

    impl="reference"  the per-tensor function, one tensor at a time
    impl="foreach"    the list function, in chunks of tensors on the CPU (sized from the L2 cache, then
                      measured on the optimizer's first steps: ChunkTuner)
    impl="compiled"   torch.compile of the list function: one fused pass over memory (the default on CUDA)

A subclass names its per-parameter state (`state_keys`), allocates it (`_init_state`), turns the
group's hyperparameters and the step count into plain numbers (`_scalars`, the only place the step
count is used) and points `reference_step` and `foreach_step` at two module-level functions with the signature

    fn(params, grads, *state_lists, **scalars)

Every algorithm here is per tensor (LAMB/LARS norms included), so running the list function on a
chunk of the tensors is exact. The step count lives in a CPU tensor (`state["step"]`, as in
torch.optim), so bias corrections never wait for the GPU; norms and trust ratios stay on the device
(torch._foreach_norm, torch.where): `step` has no host synchronization.

A step can be skipped on the device, as torch's fused optimizers skip one for GradScaler:
`step(found_inf=flag)` (or the attribute `optimizer.found_inf`), a 0-d or one-element tensor,
nonzero = skip, keeps every parameter and every tensor of `state_keys` as it was, with no host
sync. The compiled step does it inside its own pass (`found_inf_step`: the same kernels, reads and
writes as the plain compiled step, an extra select in registers); reference and foreach copy those
tensors first and select after the step. The step count advances whatever the flag (reading it
would be a sync): the caller that skips puts it back when it knows the flag, as
steepest.training.skip.DeviceSkip does.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

IMPLS = ("reference", "foreach", "compiled")
CHUNK_ENV = "STEEPEST_CPU_CHUNK_NUMEL"
_CHUNK_RANGE = (1 << 13, 1 << 20)


def _size_bytes(text: str) -> int | None:
    """'512K', '1024K', '2M', '1048576' (sysfs cache sizes) in bytes; None when unreadable."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() and int(digits) > 0 else None


def l2_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size of one core's level-2 data (or unified) cache in bytes, from Linux sysfs (else
    glibc's sysconf); None when the platform says nothing (macOS, Windows, some containers)."""
    for index in sorted(Path(root).glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            if level == "2" and kind in ("Unified", "Data"):
                return _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
        return size if size > 0 else None
    except (ValueError, OSError, AttributeError):
        return None


def cpu_chunk_numel(l2_bytes: int | None = None, env: str | None = None) -> int:
    """Elements per foreach chunk on the CPU, the size each optimizer starts from (ChunkTuner then
    times it against 4x and 16x on the optimizer's first steps): the largest power of two whose
    float32 bytes fill half of one core's L2 cache (L2 / 8 elements), within [2^13, 2^20]; 2^16
    when the cache size is unknown. 512 KiB (AMD EPYC Zen 2-4) gives 2^16; 1-1.25 MiB (Intel Xeon
    Skylake-SP to Ice Lake) 2^17, 2 MiB (Sapphire Rapids) 2^18. `STEEPEST_CPU_CHUNK_NUMEL` (a
    positive integer, or e.g. 64K) fixes the size instead: no measurement. The chunk size never
    changes a result: every step function is exact per tensor."""
    env = os.environ.get(CHUNK_ENV, "") if env is None else env
    if env.strip():
        value = _size_bytes(env)
        if value is None:
            raise ValueError(f"{CHUNK_ENV}={env!r} is not a positive number of elements (e.g. 65536 or 64K)")
        return value
    l2 = l2_cache_bytes() if l2_bytes is None else l2_bytes
    if not l2:
        return 1 << 16
    budget = 1 << max(0, (l2 // 8).bit_length() - 1)
    return min(max(budget, _CHUNK_RANGE[0]), _CHUNK_RANGE[1])


def _first_process() -> bool:
    """Rank 0 of a torchrun launch, or a single process (WORLD_SIZE unset or 1: a stray RANK does not
    count); a malformed environment counts as the first (steepest.training.distributed.torchrun_env
    names it where a run starts). The optim layer reads the variables itself: it sits below training."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1) <= 1 or int(os.environ.get("RANK") or 0) == 0
    except ValueError:
        return True


def _chunk_at_import() -> tuple[int, bool]:
    """(the starting chunk size, whether it is measured at first use): an override is used as given."""
    try:
        return cpu_chunk_numel(), not os.environ.get(CHUNK_ENV, "").strip()
    except ValueError as exc:  # a bad override must not stop `import steepest`: it is ignored, as if unset
        if _first_process():  # torchrun: said once, by the first process, not once per rank
            warnings.warn(f"{exc}; ignored: the size comes from the L2 cache and is measured at first use", RuntimeWarning, stacklevel=2)
        return cpu_chunk_numel(env=""), True


# Elements per foreach chunk on the CPU, chosen from this machine's L2 cache size (see cpu_chunk_numel),
# then tuned per optimizer by timing its first steps (ChunkTuner) unless STEEPEST_CPU_CHUNK_NUMEL fixes it.
CPU_CHUNK_NUMEL, CPU_CHUNK_TUNE = _chunk_at_import()


class ChunkTuner:
    """The CPU foreach chunk size of one optimizer, measured at first use: from its step
    `from_step` on, its own steps run in turn at `base`, 4 `base` and 16 `base` elements per chunk,
    `rounds` times each, and the size of the fastest step (the minimum over its rounds: the least
    disturbed by other work on the machine) is kept from then on. The steps are real steps: any
    chunking gives the same bits, so the measurement changes no result, only the time. Larger chunks
    mean fewer Python-level calls (each foreach op costs microseconds per call), smaller ones more
    reuse of the cache between an update's passes; which wins depends on the machine, its load and
    the model's tensor sizes (benchmarks/optim_step.py --chunk-sweep shows the trade-off).

        >>> t = ChunkTuner(1 << 16, from_step=0, rounds=1)
        >>> for seconds in (3.0, 2.0, 2.5):
        ...     t.record(t.size(), seconds)
        >>> t.chosen == 1 << 18
        True
    """

    FACTORS = (1, 4, 16)
    MAX_NUMEL = 1 << 24

    def __init__(self, base: int, from_step: int = 2, rounds: int = 2):
        self.base, self.from_step, self.rounds = base, from_step, rounds
        self.candidates = sorted({min(base * f, max(base, self.MAX_NUMEL)) for f in self.FACTORS})
        self.best = {c: float("inf") for c in self.candidates}
        self.calls = 0
        self.chosen: int | None = None

    def size(self) -> int:
        """The chunk size for the next step."""
        if self.chosen is not None:
            return self.chosen
        k = self.calls - self.from_step
        return self.candidates[k % len(self.candidates)] if k >= 0 else self.base

    def record(self, size: int, seconds: float) -> None:
        """The time of a step run at `size` (from `size()`)."""
        if self.chosen is None and self.calls >= self.from_step:
            self.best[size] = min(self.best[size], seconds)
        self.calls += 1
        if self.chosen is None and self.calls >= self.from_step + self.rounds * len(self.candidates):
            self.chosen = min(self.candidates, key=self.best.__getitem__)
_COMPILED: dict[Callable, Callable] = {}
_UNCOMPILABLE: set[Callable] = set()  # step functions whose compilation failed on this machine


def _is_compile_failure(exc: Exception) -> bool:
    """Errors raised by Dynamo/Inductor while building the graph (no C++ compiler, no Triton, ...)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(exc).__name__


def compiled(fn: Callable) -> Callable:
    """torch.compile(fn), built once per function (floats are graph inputs: a new lr does not recompile)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, fullgraph=False)
    return _COMPILED[fn]


def chunks(params: list[torch.Tensor], budget: int) -> Iterator[slice]:
    """Consecutive slices of `params` holding about `budget` elements each (a large tensor alone)."""
    start, size = 0, 0
    for i, p in enumerate(params):
        if size and size + p.numel() > budget:
            yield slice(start, i)
            start, size = i, 0
        size += p.numel()
    if start < len(params):
        yield slice(start, len(params))


class StepwiseOptimizer(torch.optim.Optimizer):
    """An optimizer whose step is `reference_step` / `foreach_step` over the parameters that have a
    gradient and their `state_keys` (see the module docstring); `impl` picks how it runs. The step
    takes `found_inf` (see `step`), so that a non-finite step is skipped on the device without a
    copy of the parameters and state (what DeviceSkip does for other optimizers)."""

    state_keys: ClassVar[tuple[str, ...]] = ()
    # scalars that change from step to step: 0-d device tensors under torch.compile (no recompiles)
    dynamic_scalars: ClassVar[tuple[str, ...]] = ("lr",)
    reference_step: ClassVar[Callable[..., None]]
    foreach_step: ClassVar[Callable[..., None]]

    def __init__(self, params, defaults: dict[str, Any], foreach: bool | None = None, impl: str | None = None):
        if impl is not None and impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
        super().__init__(params, {**defaults, "foreach": foreach, "impl": impl})

    def _init_state(self, p: torch.Tensor, group: dict) -> dict[str, torch.Tensor]:
        return {}

    def _scalars(self, group: dict, step: int) -> dict[str, Any]:
        raise NotImplementedError

    def _grads(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        return grads

    @staticmethod
    def resolve_impl(group: dict, device: torch.device) -> str:
        """The group's `impl`; else `foreach` (True: foreach, False: reference); else compiled on CUDA, foreach elsewhere."""
        if group.get("impl") is not None:
            return group["impl"]
        if group.get("foreach") is not None:
            return "foreach" if group["foreach"] else "reference"
        return "compiled" if device.type == "cuda" else "foreach"

    def _run(self, impl: str, params, grads, lists, scalars) -> None:
        cls = type(self)
        if impl == "reference":
            cls.reference_step(params, grads, *lists, **scalars)
        elif impl == "compiled" and cls.foreach_step not in _UNCOMPILABLE:
            try:
                compiled(cls.foreach_step)(params, grads, *lists, **self._device_scalars(scalars, params[0]))
            except Exception as exc:  # one graph, compiled before it runs: nothing was written yet
                if not _is_compile_failure(exc):
                    raise
                _UNCOMPILABLE.add(cls.foreach_step)
                warnings.warn(f"{cls.__name__}: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "using the foreach step (pass impl='foreach' to silence this)", RuntimeWarning, stacklevel=3)
                cls.foreach_step(params, grads, *lists, **scalars)
        elif impl == "compiled":
            cls.foreach_step(params, grads, *lists, **scalars)
        elif params[0].device.type == "cpu":
            for s in chunks(params, self.__dict__.get("_chunk_numel", CPU_CHUNK_NUMEL)):
                cls.foreach_step(params[s], grads[s], *[xs[s] for xs in lists], **scalars)
        else:
            cls.foreach_step(params, grads, *lists, **scalars)

    def _device_scalars(self, scalars: dict[str, Any], like: torch.Tensor) -> dict[str, Any]:
        """The dynamic scalars as 0-d tensors on `like`'s device, refilled in place: `fill_` launches a
        kernel with the value as its argument, no host-to-device copy and no synchronization."""
        buffers = self.__dict__.setdefault("_scalar_buffers", {})
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        out = dict(scalars)
        for name in self.dynamic_scalars:
            key = (name, like.device, dtype)
            if key not in buffers:
                buffers[key] = torch.zeros((), dtype=dtype, device=like.device)
            out[name] = buffers[key].fill_(scalars[name])
        return out

    def _run_found_inf(self, impl: str, params, grads, lists, scalars, found_inf: torch.Tensor) -> None:
        """`_run`, keeping every tensor it writes (the parameters, each state list) as it was where
        `found_inf` is nonzero. Compiled: one graph that selects inside the update's own pass (see
        `found_inf_step`). Otherwise, and for a subclass with its own `_run` (AdaHessian writes its
        Hessian estimate there): copies taken before `_run` and a select after it, plain ops."""
        cls = type(self)
        flag = found_inf.reshape(())
        if flag.device != params[0].device:  # a model over several devices: each group gets its own copy, no sync
            flag = flag.to(params[0].device, non_blocking=True)
        own_run = cls._run is StepwiseOptimizer._run
        if impl == "compiled" and own_run and cls.foreach_step not in _UNCOMPILABLE:
            try:
                found_inf_step(cls.foreach_step)(params, grads, *lists, found_inf=flag.to(torch.float32),
                                                 **self._device_scalars(scalars, params[0]))
                return
            except Exception as exc:  # the clones are written before the parameters and state: nothing of theirs yet
                if not _is_compile_failure(exc):
                    raise
                _UNCOMPILABLE.add(cls.foreach_step)
                warnings.warn(f"{cls.__name__}: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "using the foreach step (pass impl='foreach' to silence this)", RuntimeWarning, stacklevel=3)
        written = [params, *lists]
        saved = [[local_shard(t).clone() for t in xs] for xs in written]
        self._run(impl, params, grads, lists, scalars)
        keep = flag == 0
        for xs, olds in zip(written, saved):
            for t, old in zip(xs, olds):
                t = local_shard(t)
                torch.where(keep, t, old, out=t)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None, *, found_inf: torch.Tensor | None = None):
        """One step of every group. `found_inf` (GradScaler's convention: a 0-d or one-element tensor
        on the parameters' device, nonzero where a gradient was not finite) keeps every parameter and
        every device state tensor as it was where it is nonzero, decided on the device: no host sync.
        It may also be set as the attribute `optimizer.found_inf`, as torch's fused optimizers read it.
        The step count `state["step"]` (a CPU tensor, read on the host for the bias corrections)
        advances whatever the flag: the caller that skips puts it back once the flag is on the host
        (steepest.training.skip.DeviceSkip does, one step late on CUDA)."""
        if found_inf is None:
            found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and not (isinstance(found_inf, torch.Tensor) and found_inf.numel() == 1):
            got = f"a tensor of shape {tuple(found_inf.shape)}" if isinstance(found_inf, torch.Tensor) else type(found_inf).__name__
            raise TypeError(f"found_inf must be a 0-d or one-element tensor on the parameters' device (nonzero: skip the "
                            f"step), got {got}")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        tuner = self._tuner()
        self._chunk_numel = tuner.size() if tuner is not None else CPU_CHUNK_NUMEL
        chunked, start = False, time.perf_counter()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state.update(self._init_state(p, group))
                state["step"] += 1
                states.append(state)
            impl = self.resolve_impl(group, params[0].device)
            chunked = chunked or (impl == "foreach" and params[0].device.type == "cpu")
            for step, members in self._by_step(states):  # one bucket unless parameters started at different steps
                ps, ss = [params[i] for i in members], [states[i] for i in members]
                lists = [[s[key] for s in ss] for key in self.state_keys]
                if found_inf is None:
                    self._run(impl, ps, self._grads(ps), lists, self._scalars(group, step))
                else:
                    self._run_found_inf(impl, ps, self._grads(ps), lists, self._scalars(group, step), found_inf)
        if tuner is not None and chunked:
            tuner.record(self._chunk_numel, time.perf_counter() - start)
        return loss

    @staticmethod
    def _by_step(states: list[dict]) -> list[tuple[int, list[int]]]:
        """The indices of `states` grouped by their step count, fewest steps first. Each parameter
        keeps its own count, as torch.optim does: one that first gets a gradient later (gradual
        unfreezing, a branch unused for a while) takes the bias corrections of its own first step,
        not the group's. The counts are CPU tensors: no device synchronization."""
        steps = [int(s["step"]) for s in states]
        if steps.count(steps[0]) == len(steps):
            return [(steps[0], list(range(len(steps))))]
        buckets: dict[int, list[int]] = {}
        for i, step in enumerate(steps):
            buckets.setdefault(step, []).append(i)
        return sorted(buckets.items())

    def _tuner(self) -> ChunkTuner | None:
        """This optimizer's ChunkTuner (None when STEEPEST_CPU_CHUNK_NUMEL fixes the size); a new one
        when the base size changed."""
        if not CPU_CHUNK_TUNE:
            return None
        tuner = self.__dict__.get("_chunk_tuner")
        if tuner is None or tuner.base != CPU_CHUNK_NUMEL:
            tuner = self.__dict__["_chunk_tuner"] = ChunkTuner(CPU_CHUNK_NUMEL)
        return tuner


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """The tensor itself, or a DTensor's local shard (FSDP parameters and state), written in place."""
    return t.to_local() if type(t).__name__ == "DTensor" else t


_FOUND_INF: dict[Callable, Callable] = {}


def found_inf_step(fn: Callable) -> Callable:
    """torch.compile of `fn` (a list step function) that keeps every tensor it writes as it was where
    `found_inf` is nonzero: `fn` runs on clones of the parameters and state lists, and each original
    gets `where(found_inf == 0, new, old)`. Inductor folds the clones away (they are reads of the
    originals) and the select into the pass that writes each tensor, so the guarded step moves as
    many bytes as the plain one (the generated CPU code of every own optimizer has the same kernels,
    loops, loads and stores with and without the flag, torch 2.13). Built once per function, each on its own code object, so that
    Dynamo keeps a cache per step function as `compiled` does (one shared wrapper would hit the
    recompile limit across optimizers)."""
    if fn not in _FOUND_INF:
        def template(params, grads, *lists, found_inf, **scalars):
            keep = found_inf == 0
            written = [params, *lists]
            new = [[t.clone() for t in xs] for xs in written]
            fn(new[0], grads, *new[1:], **scalars)
            for xs, ys in zip(written, new):
                torch._foreach_copy_(xs, [torch.where(keep, y, x) for x, y in zip(xs, ys)])

        name = f"{fn.__name__}_found_inf"
        code = template.__code__.replace(co_name=name, co_qualname=name)
        wrapper = type(template)(code, template.__globals__, name, None, template.__closure__)
        _FOUND_INF[fn] = torch.compile(wrapper, fullgraph=False)
    return _FOUND_INF[fn]


def init_composite(optimizer: torch.optim.Optimizer) -> None:
    """The bookkeeping torch.optim.Optimizer.__init__ would do, for optimizers built around other
    optimizers (Lookahead, MuonAdamW) that share their parameter groups instead of owning them."""
    for hooks in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks", "_optimizer_state_dict_pre_hooks",
                  "_optimizer_state_dict_post_hooks", "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks"):
        setattr(optimizer, hooks, {})


def trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor) -> torch.Tensor:
    """||w|| / ||u||, and 1 where either norm is zero (the LARS/LAMB convention); no host sync."""
    ok = (w_norm > 0) & (u_norm > 0)
    return torch.where(ok, w_norm / torch.where(ok, u_norm, torch.ones_like(u_norm)), torch.ones_like(w_norm))


def clamped_trust(w_norm: torch.Tensor, u_norm: torch.Tensor, adapt: bool, max_trust: float | None,
                  max_weight_norm: float | None) -> torch.Tensor:
    """The LAMB/LARS-style trust ratio with its options: 1 for unadapted groups, ||w|| clamped to
    `max_weight_norm` (the phi of You et al. 2020), the ratio clamped to `max_trust`."""
    if not adapt:
        return torch.ones_like(w_norm)
    if max_weight_norm is not None:
        w_norm = w_norm.clamp(max=max_weight_norm)
    ratio = trust_ratio(w_norm, u_norm)
    return ratio if max_trust is None else ratio.clamp(max=max_trust)


def check_adam_hyperparameters(lr: float, eps: float, betas: tuple[float, float], weight_decay: float) -> None:
    """torch.optim's checks (and messages) for Adam-family hyperparameters."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"Invalid betas: {betas}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def adam_state(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Zeroed first and second moments shaped like `p`."""
    return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}


def adam_moments_(w, g, m, v, *, lr, beta1, beta2, weight_decay, decoupled) -> torch.Tensor:
    """One tensor's weight decay (L2 into the gradient, or decoupled: w *= 1 - lr * wd) and Adam's
    moments m = lerp(m, g, 1 - beta1), v = beta2 v + (1 - beta2) g^2; returns the gradient used."""
    if weight_decay:
        if decoupled:
            w.mul_(1 - lr * weight_decay)
        else:
            g = g.add(w, alpha=weight_decay)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    return g


def adam_moments_foreach_(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, weight_decay, decoupled) -> list[torch.Tensor]:
    """`adam_moments_` over lists of tensors; returns the gradients used."""
    if weight_decay:
        if decoupled:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    return grads


def add_scaled_(xs: list[torch.Tensor], ys: list[torch.Tensor], alpha: float | torch.Tensor) -> None:
    """xs += alpha * ys for a number or a 0-d tensor alpha (foreach `alpha=` takes numbers only)."""
    if isinstance(alpha, torch.Tensor):
        torch._foreach_add_(xs, torch._foreach_mul(ys, alpha))
    else:
        torch._foreach_add_(xs, ys, alpha=alpha)


def full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor: a DTensor (FSDP-sharded parameter or a norm over one) gathered, anything else as is."""
    return t.full_tensor() if type(t).__name__ == "DTensor" else t


def stacked_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor L2 norms as one vector (one foreach kernel, then a stack)."""
    return torch.stack(torch._foreach_norm(tensors))
