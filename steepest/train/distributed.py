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
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local), device


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
    from torch.distributed.fsdp import fully_shard

    from steepest.nn.blocks import parameter_blocks

    for _, block in parameter_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
