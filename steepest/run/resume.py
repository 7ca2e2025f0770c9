"""Continue a run from the newest good checkpoint of its directory."""

from __future__ import annotations

import warnings
from typing import Any

from steepest.errors import CheckpointError
from steepest.training.checkpoint import CheckpointManager

# The parts of a recipe that may change between a run and its continuation (budget, logging, device).
RESUMABLE_CHANGES = {
    "trainer": {"max_epochs", "max_steps", "progress", "device", "log_every_n_steps"},
    "checkpoint": {"every_n_steps", "every_n_epochs", "keep_last"},
}


def training_relevant(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a recipe that must match to continue a run (not budget, logging or device)."""
    return {sec: ({k: v for k, v in val.items() if k not in RESUMABLE_CHANGES.get(sec, set())} if isinstance(val, dict) else val)
            for sec, val in config.items() if sec not in ("name", "description")}


def resume(run) -> int:
    """Load the newest good checkpoint of `run.run_dir` into its trainer; returns the step resumed
    from (0: nothing to resume). Raises CheckpointError when every checkpoint is corrupt or the
    checkpoints come from a different recipe."""
    manager = CheckpointManager(run.run_dir / "checkpoints")
    found = manager.load_latest()
    if found is None:
        if manager.step_files():
            raise CheckpointError(f"no usable checkpoint in {manager.dir}: every one is corrupt; delete them to start over")
        warnings.warn(f"nothing to resume in {manager.dir}; starting from scratch", stacklevel=2)
        return 0
    state, path = found
    saved, current = state.get("config", {}), run.trainer.recipe
    if training_relevant(saved) != training_relevant(current):
        raise CheckpointError(f"{path} was written by a different recipe; resume with the run's own config.yaml or start a new --run-dir")
    run.trainer.load_state_dict(state)
    if run.store is not None:
        run.store.truncate_after(run.trainer.state.step)
    return run.trainer.state.step
