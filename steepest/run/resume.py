"""Continue a run from the newest good checkpoint of its directory.

`find_checkpoints` is the check made before anything is written (a refused resume changes
nothing); `resume` loads the newest checkpoint that verifies and applies it, falling back to the
one before whenever a file cannot be used (corrupt bytes, an invalid structure, a state the model
or optimizer does not accept)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steepest.errors import CheckpointError
from steepest.training.checkpoint import CheckpointManager, validate_training_state

# The parts of a recipe that may change between a run and its continuation (budget, logging, device).
RESUMABLE_CHANGES = {
    "trainer": {"max_epochs", "max_steps", "progress", "device", "log_every_n_steps", "loggers", "histograms_every_n_steps"},
    "checkpoint": {"every_n_steps", "every_n_epochs", "keep_last"},
}


def training_relevant(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe that must match to continue a run (not budget, logging or device)."""
    return {sec: ({k: v for k, v in val.items() if k not in RESUMABLE_CHANGES.get(sec, set())} if isinstance(val, dict) else val)
            for sec, val in config.items() if sec not in ("name", "description")}


def find_checkpoints(run_dir: str | Path, config: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Path]] | None:
    """The run's checkpoints that verify, newest first, after checking that the newest was written
    by a recipe with the same training-relevant parts as `config`; None when there is nothing to
    resume. CheckpointError when every checkpoint is corrupt or the recipe differs."""
    manager = CheckpointManager(Path(run_dir) / "checkpoints")
    found = manager.candidates(validate_training_state)
    first = next(found, None)
    if first is None:
        if manager.step_files():
            raise CheckpointError(f"no usable checkpoint in {manager.dir}: every one is corrupt; delete them to start over")
        _check_same_recipe(Path(run_dir), config)  # the run starts over there: still the run's own recipe
        return None
    state, path = first
    if training_relevant(state.get("config", {})) != training_relevant(config):
        raise CheckpointError(f"{path} was written by a different recipe; resume with the run's own config.yaml or start a new --run-dir")
    return _chain(first, found)


def _check_same_recipe(run_dir: Path, config: dict[str, Any]) -> None:
    """With no checkpoint to compare with, the run's config.yaml stands for its recipe: a different one is refused as
    a checkpoint of a different recipe is (an unreadable config.yaml is left to the run to replace)."""
    from steepest.config.arguments import RUN_CONFIG
    from steepest.config.yaml_io import read_yaml

    try:
        saved = read_yaml(run_dir / RUN_CONFIG)
    except Exception:  # noqa: BLE001 - missing or unreadable: nothing to compare with
        return
    if isinstance(saved, dict) and training_relevant(saved) != training_relevant(config):
        raise CheckpointError(f"{run_dir} holds a run of a different recipe (its {RUN_CONFIG}) and no checkpoint to continue; "
                              "resume with the run's own recipe, or start a new --run-dir (or --overwrite it)")


def _chain(first, rest):
    yield first
    yield from rest


def resume(run, checkpoints: Iterator[tuple[dict[str, Any], Path]] | None = None) -> int:
    """Apply the newest usable checkpoint of `run.run_dir` (or of `checkpoints`, from
    `find_checkpoints`) to the run's trainer; returns the step resumed from (0: nothing to resume)."""
    if checkpoints is None:
        checkpoints = find_checkpoints(run.run_dir, run.trainer.recipe)
    if checkpoints is None:
        warnings.warn(f"nothing to resume in {run.run_dir / 'checkpoints'}; starting from scratch", stacklevel=2)
        if run.store is not None:
            run.store.truncate_after(-1)  # the earlier attempt's rows: this run logs its steps anew
        return 0
    for state, path in checkpoints:
        try:
            run.trainer.load_state_dict(state)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:  # the state does not fit this run
            warnings.warn(f"checkpoint {path} does not load ({type(exc).__name__}: {str(exc)[:120]}); falling back to the previous one",
                          stacklevel=2)
            continue
        if run.store is not None:
            run.store.truncate_after(run.trainer.state.step)
        return run.trainer.state.step
    raise CheckpointError(f"no checkpoint in {run.run_dir / 'checkpoints'} loads into this run; delete them to start over")
