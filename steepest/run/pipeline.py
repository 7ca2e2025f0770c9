"""`train(recipe)`: a recipe end to end in a run directory."""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from pathlib import Path
from typing import Any

from steepest.config import Recipe, recipe_to_dict
from steepest.config.validate import validate_recipe
from steepest.errors import ConfigError
from steepest.run.build import build_run, check_device
from steepest.run.directory import (
    CONSOLE_LOG,
    ConsoleCopy,
    device_name,
    prepare_run_dir,
    release_run_dir,
    write_config,
    write_data_info,
    write_run_info,
)
from steepest.run.finish import finish
from steepest.run.resume import find_checkpoints, resume
from steepest.track import default_run_dir
from steepest.training import distributed
from steepest.training.events import Callback


def train(recipe: Recipe, run_dir: str | Path | None = None, *, resume_run: bool = False, overwrite: bool = False,
          console: bool = True, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train a recipe end to end; returns the summary (also written to run_dir/summary.json).

    The run directory (default: a new `runs/<recipe>-<time>`) is checked before anything is
    written (see `steepest.run.directory.prepare_run_dir`); with `resume_run`, so are the
    checkpoints, so a refused resume leaves the directory as it was. config.yaml is written next,
    before the data is read."""
    started = time.time()
    if run_dir is not None and not str(run_dir).strip():
        raise ConfigError("run_dir is empty (an unset variable?); give a folder, or None for runs/<recipe>-<time>")
    is_main = distributed.torchrun_env().rank == 0  # the launch's environment, checked before anything else
    validate_recipe(recipe)  # a recipe error leaves the run directory untouched
    check_device(recipe)  # and so does a device this machine lacks (trainer.device, trainer.cuda_graphs)
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(recipe.name or "run")
    if not is_main:
        checkpoints = find_checkpoints(run_path, recipe_to_dict(recipe)) if resume_run else None
        return _train(recipe, run_path, started, checkpoints if resume_run else False, console, extra_callbacks)
    held = prepare_run_dir(run_path, resume=resume_run, overwrite=overwrite).resolve()  # locked until this run ends
    try:
        checkpoints = find_checkpoints(run_path, recipe_to_dict(recipe)) if resume_run else None
        write_config(recipe, run_path)
        with ConsoleCopy(run_path / CONSOLE_LOG) if console else contextlib.nullcontext():
            return _train(recipe, run_path, started, checkpoints if resume_run else False, console, extra_callbacks)
    finally:
        release_run_dir(held)


def _train(recipe, run_path: Path, started: float, checkpoints, console: bool, extra_callbacks) -> dict[str, Any]:
    run = build_run(recipe, run_path, console=console, extra_callbacks=extra_callbacks)
    try:
        if run.dist.rank == 0:
            write_data_info(run.data.info, run_path)
            write_run_info(run_path, device_name(run.trainer.device), resumed=checkpoints is not False)
        if checkpoints is not False:
            step = resume(run, checkpoints)
            if console and run.dist.rank == 0 and step:
                print(f"resumed from step {step} (epoch {run.trainer.state.epoch}) of {run_path}", file=sys.stderr)
        run.trainer.fit()
        summary = finish(run, started)
        summary["run_dir"] = str(run_path)
        distributed.barrier(run.dist)  # no rank tears the process group down while another still uses it
        return summary
    finally:
        if run.store is not None:
            run.store.close()
        ctx = run.dist
        for loader in (run.trainer.loader, *run.trainer.eval_data.values()):
            close = getattr(loader, "close", None)  # persistent DataLoader workers stop now, not at collection
            if close is not None:
                close()
        del run  # free the model (with FSDP it holds the process group) now, not during interpreter shutdown,
        gc.collect()  # where a process group's worker threads abort the process ("terminate called ...")
        distributed.shutdown(ctx)
