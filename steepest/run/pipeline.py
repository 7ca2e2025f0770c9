"""`train(recipe)`: a recipe end to end in a run directory."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from steepest.config import Recipe
from steepest.run.build import build_run
from steepest.run.directory import write_config, write_data_info
from steepest.run.finish import finish
from steepest.run.resume import resume
from steepest.track import default_run_dir
from steepest.training import distributed
from steepest.training.events import Callback


def train(recipe: Recipe, run_dir: str | Path | None = None, *, resume_run: bool = False, console: bool = True,
          extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train a recipe end to end; returns the summary (also written to run_dir/summary.json)."""
    started = time.time()
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(recipe.name or "run")
    run_path.mkdir(parents=True, exist_ok=True)
    run = build_run(recipe, run_path, console=console, extra_callbacks=extra_callbacks)
    try:
        if run.dist.rank == 0:
            write_config(recipe, run_path)
            write_data_info(run.data.info, run_path)
        if resume_run:
            resume(run)
        run.trainer.fit()
        summary = finish(run, started)
        summary["run_dir"] = str(run_path)
        distributed.barrier(run.dist)  # no rank tears the process group down while another still uses it
        return summary
    finally:
        if run.store is not None:
            run.store.close()
        ctx = run.dist
        del run  # free the model (with FSDP it holds the process group) now, not during interpreter shutdown,
        gc.collect()  # where a process group's worker threads abort the process ("terminate called ...")
        distributed.shutdown(ctx)
