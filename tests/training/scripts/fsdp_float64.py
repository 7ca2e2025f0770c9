"""Run by test_distributed_scripts.py: 30 float64 steps of several optimizers on an MLP, sharded by
FSDP2 when launched by torchrun (or called by two_rank_checks.py inside its process group), else in
one process; writes the final full weights to argv[1]/<name>_<world>.safetensors."""

import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

import steepest.optim as so

NAMES = ("lamb", "lars", "lion", "novograd", "adamw")


def train_optimizers(out: str, rank: int, world: int) -> None:
    """Each optimizer's run, on `world` ranks (FSDP2 over the current process group when above 1)."""
    for name in NAMES:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
        if world > 1:
            from torch.distributed.fsdp import fully_shard

            for layer in (model[0], model[2]):
                fully_shard(layer)
            fully_shard(model)
        opt = so.create(name, model, lr=1.0 if name == "lars" else 5e-3, weight_decay=0.01)
        g = torch.Generator().manual_seed(1)
        x_all, y_all = torch.randn(64, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
        for _ in range(30):  # each rank takes its share; the mean over ranks is the full-batch gradient
            loss = torch.nn.functional.cross_entropy(model(x_all[rank::world]), y_all[rank::world])
            loss.backward()
            opt.step()
            opt.zero_grad()
        if world > 1:
            import torch.distributed.checkpoint.state_dict as dcp

            state = dcp.get_model_state_dict(model, options=dcp.StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            state = model.state_dict()
        if rank == 0:
            save_file({k: v.detach().contiguous() for k, v in state.items()}, f"{out}/{name}_{world}.safetensors")
        del model, opt


if __name__ == "__main__":
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    train_optimizers(sys.argv[1], dist.get_rank() if world > 1 else 0, world)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
