"""`steepest find-lr`, `steepest compare` and `steepest search`: each a pair of functions, the
arguments and the command (see `steepest.cli.COMMANDS`); torch is imported when a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steepest.config.arguments import add_recipe_arguments, recipe_from_arguments
from steepest.errors import ConfigError


def _out_dir(args, prefix: str, recipe) -> Path:
    from steepest.track import default_run_dir

    out = Path(args.out) if args.out else default_run_dir(f"{prefix}-{recipe.name}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def find_lr(args: argparse.Namespace) -> int:
    from steepest.run import build_run
    from steepest.tune.lr_finder import grid_search, plot, range_test

    recipe = recipe_from_arguments(args)
    run = build_run(recipe, None, console=False)
    if args.mode == "range":
        result = range_test(run.trainer, args.start, args.end, args.steps, suggest=args.suggest)
    else:
        result = grid_search(run.trainer, steps_per_lr=args.grid_steps)
    out = _out_dir(args, "find-lr", recipe)
    (out / "lr_finder.json").write_text(json.dumps(result.to_dict(), indent=2))
    plotted = plot(result, out / "lr_finder.png")
    others = ", ".join(f"{k} {v:.2e}" for k, v in result.suggestions.items() if k != result.chosen)
    print(f"suggested lr: {result.suggested_lr:.2e}" + (f"  ({result.chosen}; {others})" if others else f"  ({result.chosen})"))
    print(f"results: {out / 'lr_finder.json'}" + (f", plot: {out / 'lr_finder.png'}" if plotted else " (install matplotlib for the plot)"))
    return 0


def compare(args: argparse.Namespace) -> int:
    from steepest.tune.compare import compare as compare_optimizers
    from steepest.tune.compare import format_table

    recipe = recipe_from_arguments(args)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ConfigError("compare --optimizers: give a comma-separated list, e.g. sgd,momentum,adam")
    lrs = {}
    for item in args.lr or []:
        name, _, value = item.partition("=")
        try:
            lrs[name] = float(value)
        except ValueError:
            raise ConfigError(f"compare --lr: '{item}' is not NAME=FLOAT") from None
    out = _out_dir(args, "compare", recipe)
    rows = compare_optimizers(recipe, names, out, lrs, lr_from_finder=args.lr_from_finder)
    print(format_table(rows))
    print(f"results: {out / 'comparison.md'}, curves: {out / 'comparison.png'}")
    return 0


def search(args: argparse.Namespace) -> int:
    from steepest.tune.search import best_recipe_path, format_trials, refuse_distributed, run_search

    refuse_distributed()  # before anything is written
    recipe = recipe_from_arguments(args)
    out = _out_dir(args, "search", recipe)
    study = run_search(recipe, out, storage=args.storage, study_name=args.study, n_trials=args.trials, console=True)
    print(format_trials(study))
    print(f"best {recipe.search.metric}: {study.best_value:.4g} with " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in study.best_params.items()))
    print(f"best recipe: {best_recipe_path(out, study)}")
    return 0


def find_lr_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--mode", choices=["range", "grid"], default="range")
    p.add_argument("--start", type=float, default=1e-7, help="first lr of the range test (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last lr of the range test (default 10)")
    p.add_argument("--steps", type=int, default=100, help="steps of the range test (default 100)")
    p.add_argument("--suggest", choices=["valley", "steepest", "min10"], default="valley")
    p.add_argument("--grid-steps", type=int, default=30, help="steps per lr in grid mode")
    p.add_argument("--out", help="output folder (default runs/find-lr-<recipe>-<time>)")


def compare_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--optimizers", default="sgd,momentum,adam,adamw,rmsprop,lion")
    p.add_argument("--lr", action="append", metavar="NAME=LR", help="an optimizer's own lr (repeatable)")
    p.add_argument("--lr-from-finder", action="store_true", help="run each optimizer at its range-test suggestion")
    p.add_argument("--out", help="output folder (default runs/compare-<recipe>-<time>)")


def search_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--trials", type=int, help="number of trials (default: search.n_trials)")
    p.add_argument("--storage", help="Optuna RDB URL shared by parallel workers, one process each (default sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default: the recipe name)")
    p.add_argument("--out", help="output folder; trials go to OUT/<study>/trial-<number> (default runs/search-<recipe>-<time>)")
