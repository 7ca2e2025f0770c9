"""`steepest find-lr`, `steepest compare` and `steepest search` (the Optuna search, or with
`--procedure` the staged tuning of `steepest.tune.procedure`): each a pair of functions, the
arguments and the command (see `steepest.cli.COMMANDS`); torch is imported when a command runs."""

from __future__ import annotations

import argparse
import json
from argparse import ArgumentTypeError
from pathlib import Path

from steepest.config.arguments import (
    add_recipe_arguments,
    positive_number,
    recipe_from_arguments,
    whole_number,
)
from steepest.errors import ConfigError

MIN_RANGE_STEPS = 10  # fewer leave the suggestion rules a handful of points (as `search --lr-steps` asks, tune/procedure.py)


def _out_dir(args, prefix: str, recipe) -> Path:
    from steepest.track import default_run_dir

    out = Path(args.out) if args.out else default_run_dir(f"{prefix}-{recipe.name}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def find_lr(args: argparse.Namespace) -> int:
    from steepest.run import build_run
    from steepest.tune.lr_finder import grid_search, plot, range_test

    if args.mode == "range" and not args.start < args.end:
        raise ConfigError(f"find-lr: --start ({args.start:g}) must be below --end ({args.end:g}); the range test raises the lr from one to the other")
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
            lrs[name] = positive_number(value)
        except ArgumentTypeError:
            raise ConfigError(f"compare --lr: '{item}' is not NAME=LR with a finite LR > 0, e.g. adam=1e-3") from None
        if name not in names:
            raise ConfigError(f"compare --lr {item}: '{name}' is not among --optimizers ({', '.join(names)}); "
                              "give NAME=LR for one of them")
    out = _out_dir(args, "compare", recipe)
    rows = compare_optimizers(recipe, names, out, lrs, lr_from_finder=args.lr_from_finder)
    print(format_table(rows))
    print(f"results: {out / 'comparison.md'}, curves: {out / 'comparison.png'}")
    return 0


def search(args: argparse.Namespace) -> int:
    from steepest.tune.search import best_recipe_path, format_trials, refuse_distributed, run_search

    refuse_distributed()  # before anything is written
    if args.procedure:
        return procedure(args)
    stray = next((flag for flag in PROCEDURE_FLAGS if getattr(args, _dest(flag)) is not None), None)
    if stray:
        raise ConfigError(f"search {stray} belongs to the tuning procedure; add --procedure new or --procedure established")
    recipe = recipe_from_arguments(args)
    out = _out_dir(args, "search", recipe)
    study = run_search(recipe, out, storage=args.storage, study_name=args.study, n_trials=args.trials, console=True)
    print(format_trials(study))
    print(f"best {recipe.search.metric}: {study.best_value:.4g} with " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in study.best_params.items()))
    print(f"best recipe: {best_recipe_path(out, study)}")
    return 0


PROCEDURE_FLAGS = ("--trial-epochs", "--max-steps", "--metric", "--tolerance", "--lr-steps", "--weight-decays", "--schedules",
                   "--optimizers")


def _dest(flag: str) -> str:
    """The argparse attribute of a procedure flag (--optimizers is stored apart from compare's)."""
    return "procedure_optimizers" if flag == "--optimizers" else flag[2:].replace("-", "_")


def _floats(flag: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"search {flag}: '{text}' is not a comma-separated list of numbers") from None


def procedure(args: argparse.Namespace) -> int:
    """`steepest search RECIPE --procedure new|established`: the staged tuning of
    `steepest.tune.procedure`; prints each stage's table and the final recipe as YAML."""
    given = [flag for flag, value in (("--trials", args.trials), ("--storage", args.storage), ("--study", args.study)) if value]
    if given:
        raise ConfigError(f"search --procedure runs its own stages; {given[0]} belongs to the Optuna search (leave it out)")
    from steepest.tune.procedure import Settings, format_report, run_procedure

    given = {k: v for k, v in (("metric", args.metric), ("tolerance", args.tolerance), ("lr_steps", args.lr_steps)) if v is not None}
    if args.weight_decays is not None:
        given["weight_decays"] = _floats("--weight-decays", args.weight_decays)
    if args.schedules is not None:
        given["schedules"] = tuple(n.strip() for n in args.schedules.split(",") if n.strip())
    if args.procedure_optimizers is not None:
        given["optimizers"] = tuple(n.strip() for n in args.procedure_optimizers.split(",") if n.strip())
    settings = Settings(trial_epochs=args.trial_epochs, max_steps=args.max_steps, console=True, **given)
    settings.check()  # before the recipe's data is read
    recipe = recipe_from_arguments(args)
    out = _out_dir(args, f"procedure-{args.procedure}", recipe)
    report = run_procedure(recipe, args.procedure, out, settings)
    print(format_report(report))
    print(f"\nreport: {out / 'procedure.md'}, {out / 'procedure.json'}")
    print(f"final recipe ({report['final_recipe']}; steepest train {report['final_recipe']}):\n")
    print((out / "final_recipe.yaml").read_text(), end="")
    return 0


def find_lr_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--mode", choices=["range", "grid"], default="range")
    p.add_argument("--start", type=positive_number, default=1e-7, help="first lr of the range test (default 1e-7)")
    p.add_argument("--end", type=positive_number, default=10.0, help="last lr of the range test (default 10)")
    p.add_argument("--steps", type=whole_number(MIN_RANGE_STEPS), default=100,
                   help=f"steps of the range test (default 100, at least {MIN_RANGE_STEPS})")
    p.add_argument("--suggest", choices=["valley", "steepest", "min10"], default="valley")
    p.add_argument("--grid-steps", type=whole_number(1), default=30, help="steps per lr in grid mode")
    p.add_argument("--out", help="output folder (default runs/find-lr-<recipe>-<time>)")


def compare_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--optimizers", default="sgd,momentum,adam,adamw,rmsprop,lion")
    p.add_argument("--lr", action="append", metavar="NAME=LR", help="an optimizer's own lr (repeatable)")
    p.add_argument("--lr-from-finder", action="store_true", help="run each optimizer at its range-test suggestion")
    p.add_argument("--out", help="output folder (default runs/compare-<recipe>-<time>)")


def search_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--trials", type=whole_number(1), help="number of trials (default: search.n_trials)")
    p.add_argument("--storage", help="Optuna RDB URL shared by parallel workers, one process each (default sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default: the recipe name)")
    p.add_argument("--out", help="output folder; trials go to OUT/<study>/trial-<number> (default runs/search-<recipe>-<time>; "
                                 "with --procedure runs/procedure-<kind>-<recipe>-<time>)")
    g = p.add_argument_group("tuning procedure (Deep Learning Systems 4.5.4; instead of the Optuna search)")
    g.add_argument("--procedure", choices=["new", "established"],
                   help="new: batch 32 -> LR range test -> weight decay -> schedule (constant, lr/10 on plateau, a cyclic tail) "
                        "-> optimizer (Ranger/RangerLARS); established: critical batch (noise scale, lr scaled) -> optimizer -> "
                        "schedule (warmup + polynomial decay, with or without a cyclic tail) -> weight decay")
    g.add_argument("--trial-epochs", type=int, help="epochs per trial run (default: a quarter of the recipe's budget)")
    g.add_argument("--max-steps", type=int, help="at most this many steps per trial run")
    g.add_argument("--metric", help="validation metric the trials are judged by (default val_loss)")
    g.add_argument("--tolerance", type=float,
                   help="a candidate replaces the recipe's value only when better by more than this fraction (default 0.01)")
    g.add_argument("--lr-steps", type=int, help="steps of the LR range test (default 100)")
    g.add_argument("--weight-decays", help="weight decays tried besides none and the recipe's (default 1e-6,1e-5,1e-4,1e-3)")
    g.add_argument("--schedules", help="schedule candidates (default all: recipe,constant,plateau,constant_cyclic for new; "
                                       "recipe,warmup_poly1,warmup_poly2,warmup_poly1_cyclic,warmup_poly2_cyclic for established)")
    g.add_argument("--optimizers", dest="procedure_optimizers",
                   help="optimizer candidates (default recipe,auto: the recipe's own and Ranger, or RangerLARS from batch "
                        "1024 on; or registered names)")
