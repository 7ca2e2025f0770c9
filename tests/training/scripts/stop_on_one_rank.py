"""Run by test_distributed_scripts.py under torchrun (2 ranks, through two_rank_checks.py): rank 1
alone asks to stop at step 3 (log steps every 5, no evaluation before step 12), on digits read from
the .npz argv[2]; writes argv[1]/rank<r>.json with the step each rank stopped at, its reason and how many stop agreements
(all-reduces) the run made."""

import json
import sys
from pathlib import Path

from steepest.config import load_recipe
from steepest.run import build_run
from steepest.training import distributed
from steepest.training.events import Callback


class StopOnOneRank(Callback):
    name = "stop_on_one_rank"

    def on_step_end(self, trainer, output):
        if trainer.rank == 1 and trainer.state.step == 3:
            trainer.state.request_stop("rank 1 asked at step 3")


def run(out: str, digits_npz: str) -> None:
    """The run (it joins the process group torchrun describes, as `steepest train` does) and its record."""
    agreements = []
    real_agree = distributed.agree_on_stop

    def counting_agree(reason, ctx, device):
        agreements.append(reason)
        return real_agree(reason, ctx, device)

    distributed.agree_on_stop = counting_agree
    try:
        sets = ["data.name=null", "data.format=npz", f"data.path={digits_npz}", "data.subset=400", "data.batch_size=8",
                "trainer.max_steps=30", "trainer.log_every_n_steps=5", "trainer.early_stopping=null", "checkpoint.enabled=false",
                "model.dropout=0.0"]
        built = build_run(load_recipe("digits_mlp", sets), None, console=False, extra_callbacks=[StopOnOneRank()])
        state = built.trainer.fit()
    finally:
        distributed.agree_on_stop = real_agree
    Path(out, f"rank{built.dist.rank}.json").write_text(json.dumps(
        {"step": state.step, "reason": state.stop_reason, "agreements": len(agreements), "steps_per_epoch": built.trainer.steps_per_epoch}))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
