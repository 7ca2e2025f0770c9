"""Run by test_distributed: 30 float64 steps of several optimizers on an MLP, sharded by FSDP2 when
launched by torchrun, else in one process; writes the final full weights to argv[1]/<name>_<world>.safetensors."""

import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

import steepest.optim as so

out = sys.argv[1]
world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1:
    dist.init_process_group("gloo")
rank = dist.get_rank() if world > 1 else 0
for name in ("lamb", "lars", "lion", "novograd", "adamw"):
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
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = model.state_dict()
    if rank == 0:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, f"{out}/{name}_{world}.safetensors")
    del model, opt
if world > 1:
    dist.barrier()
    dist.destroy_process_group()
