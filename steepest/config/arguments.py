"""The command-line arguments every recipe-taking command shares, and the recipe they name.

    steepest train [RECIPE] [--set KEY=VALUE ...]
    steepest doctor --run-dir RUN [--set ...]          # the run's own config.yaml when no RECIPE is given
"""

from __future__ import annotations

import argparse
from pathlib import Path

RUN_CONFIG = "config.yaml"  # the resolved recipe inside a run directory


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled recipe name (default: digits_mlp)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. optimizer.lr=1e-3 (repeatable)")


def recipe_from_arguments(args: argparse.Namespace, run_dir: str | Path | None = None):
    """The recipe the command line names (with its --set overrides); without one, the recipe of
    `run_dir` when that holds a config.yaml, else the default recipe."""
    from steepest.config.load import (
        load_recipe,  # pydantic and YAML: not needed to build the parser
    )

    if args.recipe is None and run_dir is not None and (Path(run_dir) / RUN_CONFIG).exists():
        return load_recipe(str(Path(run_dir) / RUN_CONFIG), args.set)
    return load_recipe(args.recipe, args.set)
