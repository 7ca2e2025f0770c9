"""Run by test_distributed.py under torchrun (2 ranks): the module's two-rank runs in one launch (each
launch costs ~10 s of imports before a step is trained). argv[1] is a folder, argv[2] a JSON list of
steps, done in order:

- ["train", NAME, ARGS...]: `steepest.cli.main(["train", *ARGS])`, the function `torchrun -m steepest
  train ARGS` runs (steepest/__main__.py); each run destroys its process group at its end, as in a
  launch of its own. Each rank writes its exit status to argv[1]/NAME.rank<r>; a status other than 0
  ends the launch there.
- ["copy", SOURCE, TARGET, FILES...]: rank 0 copies the run directory SOURCE to TARGET and deletes
  FILES (paths inside TARGET, each of which must exist) while the other ranks wait on a key in
  torchrun's store (between runs there is no process group).

Every run joins its process group as `steepest train` does (`init_from_env`): the first the one torchrun
describes, each later one a new group with its own keys in torchrun's store (what this launch checks
too: a second `init_process_group()` in one process reused the first group's keys and could hang).
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from steepest.cli import main
from steepest.training.distributed import torchrun_env

folder, steps = Path(sys.argv[1]), json.loads(sys.argv[2])
rank = torchrun_env().rank
for kind, *rest in steps:
    if kind == "train":
        name, args = rest[0], rest[1:]
        code = main(["train", *args])
        (folder / f"{name}.rank{rank}").write_text(str(code))
        if code:
            sys.exit(code)
    elif kind == "copy":
        import shutil

        source, target, files = Path(rest[0]), Path(rest[1]), rest[2:]
        store = next(dist.rendezvous("env://"))[0]  # torchrun's store: no process group between runs
        if rank == 0:
            shutil.copytree(source, target)
            for file in files:
                (target / file).unlink()
            store.set(f"copied {target}", "1")
        store.wait([f"copied {target}"])
    else:
        raise ValueError(f"unknown step {kind!r}")
