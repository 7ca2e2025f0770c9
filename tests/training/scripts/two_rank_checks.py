"""Run by test_distributed_scripts.py under torchrun (2 ranks): both of its two-rank checks in one
launch (each launch costs ~10 s of imports): first stop_on_one_rank.py's run, which joins the process
group torchrun describes as `steepest train` does, then fsdp_float64.py's optimizers, sharded over
that same group. Writes what each writes to argv[1]; argv[2] is the digits .npz of the run."""

import sys

import fsdp_float64  # beside this script: its folder is sys.path[0]
import stop_on_one_rank
import torch.distributed as dist

out = sys.argv[1]
stop_on_one_rank.run(out, sys.argv[2])
fsdp_float64.train_optimizers(out, dist.get_rank(), dist.get_world_size())
dist.barrier()
dist.destroy_process_group()
