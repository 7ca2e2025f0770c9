"""The command-line arguments every recipe-taking command shares, and the recipe they name.

    steepest train [RECIPE] [--set KEY=VALUE ...]
    steepest doctor --run-dir RUN [--set ...]          # the run's own config.yaml when no RECIPE is given
    steepest predict RUN INPUT [--trust-code]          # --trust-code: the run's component: paths may be imported

A recipe with `component:` paths is code: building it imports those modules and calls those
objects. A recipe the user names on the command line is the user's own; a run directory's
config.yaml may come from anyone, so from it only registered names are built unless the user
passes --trust-code (`add_trust_code_argument`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

RUN_CONFIG = "config.yaml"  # the resolved recipe inside a run directory


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled recipe name (default: digits_mlp)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. optimizer.lr=1e-3 (repeatable)")


def add_trust_code_argument(p: argparse.ArgumentParser) -> None:
    """--trust-code, for every command that may build a recipe read from a run directory."""
    p.add_argument("--trust-code", action="store_true",
                   help="allow the component: import paths (user code, imported and run) of a run directory's "
                        "config.yaml; without it such a recipe is refused. Use only for runs whose author you trust")


def recipe_from_arguments(args: argparse.Namespace, run_dir: str | Path | None = None):
    """The recipe the command line names (with its --set overrides); without one, the recipe of
    `run_dir` when that holds a config.yaml, else the default recipe.

    A run directory's recipe with `component:` paths is refused (ConfigError naming the key, the
    path and the flag) unless `args.trust_code` (--trust-code): see `load_run_recipe`."""
    from steepest.config.load import (  # pydantic and YAML: not needed to build the parser
        load_recipe,
        load_run_recipe,
    )

    if args.recipe is None and run_dir is not None and (Path(run_dir) / RUN_CONFIG).exists():
        return load_run_recipe(Path(run_dir) / RUN_CONFIG, args.set, trust_code=getattr(args, "trust_code", False))
    return load_recipe(args.recipe, args.set)


def whole_number(minimum: int = 1):
    """An argparse `type`: a whole number >= `minimum` (counts: steps, iterations, trials); anything
    else is a usage error naming the option, the bound and the value given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"give a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"give a whole number >= {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def positive_number(text: str) -> float:
    """An argparse `type`: a finite number > 0 (a learning rate, say)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"give a finite number > 0, got {text}")
    return value
