"""A run directory: what it holds and how a run's recipe is read back from it.

    RUN_DIR/config.yaml       the resolved recipe (written before training starts)
    RUN_DIR/data_info.json    what the data is (task, classes, normalization, tokenizer)
    RUN_DIR/metrics.db        every logged scalar (SQLite)
    RUN_DIR/checkpoints/      step-N.safetensors (the whole training state), best.safetensors
    RUN_DIR/model.safetensors the final weights;  RUN_DIR/summary.json  the final metrics
"""

from __future__ import annotations

import json
from pathlib import Path

from steepest.config import Recipe, load_recipe, recipe_to_dict
from steepest.config.yaml_io import dump_yaml
from steepest.data import DataInfo
from steepest.training.checkpoint import atomic_write_bytes

CONFIG = "config.yaml"
DATA_INFO = "data_info.json"


def write_config(recipe: Recipe, run_dir: Path) -> None:
    atomic_write_bytes(Path(run_dir) / CONFIG, dump_yaml(recipe_to_dict(recipe)).encode())


def write_data_info(info: DataInfo, run_dir: Path) -> None:
    atomic_write_bytes(Path(run_dir) / DATA_INFO, json.dumps(info.to_dict(), indent=2).encode())


def recipe_from_run_dir(run_dir: str | Path, overrides: list[str] | None = None) -> Recipe:
    """The recipe a run was trained with (its config.yaml), with `overrides` applied."""
    return load_recipe(str(Path(run_dir) / CONFIG), overrides or [])
