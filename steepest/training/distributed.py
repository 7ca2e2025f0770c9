"""Data-parallel training with torch.distributed, launched by `torchrun`: DDP or FSDP2.

    torchrun --nproc_per_node=2 -m steepest train digits_mlp                              # DDP
    torchrun --nproc_per_node=2 -m steepest train digits_mlp --set trainer.strategy=fsdp  # sharded

Each process reads the same data and takes every world_size-th sample of each epoch's permutation.
DDP keeps a full replica per process and all-reduces gradients. FSDP (`fully_shard`, PyTorch's
FSDP2) shards parameters, gradients and optimizer state across processes: each repeated block
(the children of the model's largest Sequential/ModuleList) is one unit, gathered for its forward
and backward, then freed; gradients are reduce-scattered. With accumulation, the Engine skips the
gradient sync on all but the last micro-batch of a step (DDP `no_sync`, FSDP
`set_requires_gradient_sync`). Checkpoints hold full (unsharded) state, so a run can resume on any
number of processes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from steepest.errors import ConfigError
from steepest.nn.blocks import parameter_blocks


def _fsdp():
    """torch's FSDP2 and distributed-checkpoint modules, imported on first use: they add ~3 s to
    `import torch` and a single-process run never needs them."""
    import torch.distributed.checkpoint.state_dict as dcp
    import torch.distributed.fsdp as fsdp

    return fsdp, dcp


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_TORCHRUN = "launch with torchrun (it sets RANK, LOCAL_RANK and WORLD_SIZE)"
_STRAY_WARNED: set[str] = set()  # the stray RANK values already warned about (once per process)


def _env_int(name: str, env: Mapping[str, str]) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; unset it or {_TORCHRUN}") from None
    if value < 0:
        raise ConfigError(f"{name}={value} is negative; unset it or {_TORCHRUN}")
    return value


def torchrun_env(environ: Mapping[str, str] | None = None, *, warn: bool = True) -> DistContext:
    """This process's place in a torchrun launch, read from RANK, WORLD_SIZE and LOCAL_RANK: the one
    rule every part of steepest reads them by (before any process group exists).

    WORLD_SIZE unset, empty or 1 is a single process: rank 0, whatever RANK says (a RANK left over in
    a SLURM shell is ignored, with one warning). Otherwise RANK must be set and below WORLD_SIZE.
    ConfigError names a value that is not an integer, or an inconsistent set, and the fix."""
    env = os.environ if environ is None else environ
    world, rank, local = (_env_int(name, env) for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    if world is None or world == 1:
        if rank and warn and str(rank) not in _STRAY_WARNED:
            _STRAY_WARNED.add(str(rank))
            warnings.warn(f"RANK={rank} is set but WORLD_SIZE is {'1' if world else 'not'}: running as a single process "
                          "(rank 0); unset RANK, or launch with torchrun for several processes", RuntimeWarning, stacklevel=2)
        return DistContext()
    if world == 0:
        raise ConfigError(f"WORLD_SIZE=0 is not a number of processes; unset it for a single process or {_TORCHRUN}")
    if rank is None:
        raise ConfigError(f"WORLD_SIZE={world} but RANK is unset: {_TORCHRUN}, or unset WORLD_SIZE for a single process")
    if rank >= world:
        raise ConfigError(f"RANK={rank} is not below WORLD_SIZE={world}: {_TORCHRUN}, or unset both for a single process")
    return DistContext(rank, world, local or 0)


def rank_from_env() -> int:
    """This process's rank as torchrun sets it (0 for a single process), before any process group
    exists; see `torchrun_env`."""
    return torchrun_env().rank


def is_first_process() -> bool:
    """Whether this process is rank 0 (or the only one), for what is said once per launch; never
    raises: a malformed environment counts as the first process (its error is raised where the
    run starts, by `torchrun_env`)."""
    try:
        return torchrun_env(warn=False).rank == 0
    except ConfigError:
        return True


_groups_made = 0  # process groups this process has created (runs one after another under one torchrun)


def init_from_env(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes in the environment (no-op for a single process, and
    for a group the caller already created). A later run in the same process (`steepest.train` twice
    in one torchrun script; the run before destroyed its group) joins a new group whose keys in
    torchrun's store have a prefix of their own: `init_process_group()` again would reuse the first
    group's keys (torch restarts its group count), and a rank could read the stale addresses and
    wait forever."""
    global _groups_made
    ctx = torchrun_env()
    if not ctx.enabled:
        return ctx, device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if _groups_made == 0:
            dist.init_process_group(backend)
        else:
            store, rank, world = next(dist.rendezvous("env://"))
            dist.init_process_group(backend, store=dist.PrefixStore(f"steepest-group-{_groups_made}", store), rank=rank,
                                    world_size=world)
        _groups_made += 1
    return ctx, device


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device, strategy: str = "ddp") -> nn.Module:
    """DDP wrapper, or the model itself sharded in place by FSDP2 (call before building the optimizer)."""
    if not ctx.enabled:
        return model
    if strategy == "fsdp":
        return shard(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(model: nn.Module) -> nn.Module:
    """fully_shard each block with parameters, then the root (which takes the remaining parameters)."""
    fully_shard = _fsdp()[0].fully_shard
    for _, block in parameter_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: nn.Module) -> bool:
    return dist.is_initialized() and isinstance(model, _fsdp()[0].FSDPModule)


# -- decisions every rank must take together ------------------------------------------------------
def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` over all ranks (a new tensor; `value` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def agree_on_stop(reason: str, ctx: DistContext, device: torch.device) -> str:
    """Whether any rank asked to stop, decided once for all: the reason of the lowest such rank, on
    every rank ('' when none did). One scalar all-reduce; the reason travels only when there is one."""
    if not ctx.enabled:
        return reason
    flag = torch.tensor([ctx.world_size if not reason else ctx.rank], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    first = int(flag)
    if first == ctx.world_size:
        return ""
    message = [reason]
    dist.broadcast_object_list(message, src=first)
    return message[0]


# -- full (unsharded) state of a sharded model, for checkpoints --------------------------------------
def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model state; for an FSDP model gathered from the shards onto the CPU (a collective:
    every rank calls it)."""
    if not is_sharded(model):
        return model.state_dict()
    dcp = _fsdp()[1]
    return dcp.get_model_state_dict(model, options=dcp.StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full model state; for an FSDP model a collective in which rank 0's copy is broadcast
    and sharded (the other ranks may pass an empty dict)."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    dcp = _fsdp()[1]
    dcp.set_model_state_dict(model, state, options=dcp.StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def full_training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Model and optimizer state as full tensors keyed by parameter name (FSDP: a collective), so a
    checkpoint loads on any number of ranks."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    dcp = _fsdp()[1]
    return dcp.get_state_dict(model, optimizer, options=dcp.StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict) -> None:
    if not is_sharded(model):
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        return
    for group, saved in zip(optimizer.param_groups, optim_state.get("param_groups", [])):
        for key, value in saved.items():  # keys the schedules added (initial_lr, ...) must exist to be loaded
            group.setdefault(key, value)
    dcp = _fsdp()[1]
    dcp.set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                       options=dcp.StateDictOptions(full_state_dict=True))


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
