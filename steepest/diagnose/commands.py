"""`steepest doctor`, `steepest batch-size` and `steepest sharpness`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled name (default: digits_mlp)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from steepest.config import load_recipe
    from steepest.diagnose import context_from_recipe, diagnose_run, run_doctor
    from steepest.diagnose.report import Report

    recipe = None
    if args.run_dir and args.recipe is None and not args.set:
        report = Report([diagnose_run(args.run_dir)])
    else:
        recipe = load_recipe(args.recipe, args.set)
        checks = [c.strip() for c in args.checks.split(",")] if args.checks else None
        report = run_doctor(context_from_recipe(recipe), checks)
        if args.run_dir:
            report.results.append(diagnose_run(args.run_dir))
    results = report.results
    print(report.table())
    if args.json:
        out = Path(args.json)
    elif args.run_dir:
        out = Path(args.run_dir) / "doctor.json"
    else:
        from steepest.track import default_run_dir

        out = default_run_dir(f"doctor-{recipe.name}") / "doctor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.to_json())
    print(f"report: {out}")
    return 1 if any(r.verdict == "fail" for r in results) else 0


def cmd_batch_size(args: argparse.Namespace) -> int:
    from steepest.config import load_recipe
    from steepest.diagnose import context_from_recipe
    from steepest.tune.batch_size import estimate_noise_scale, sampler_from

    recipe = load_recipe(args.recipe, args.set)
    ctx = context_from_recipe(recipe)
    model = ctx.model()
    if args.warmup_steps:
        ctx.fit(model, ctx.data.train.x, ctx.data.train.y, args.warmup_steps, lr=ctx.lr, optimizer="recipe", batch=ctx.batch_size)
    result = estimate_noise_scale(model, ctx.loss_fn, sampler_from(ctx.data.train.x, ctx.data.train.y), args.small,
                                  min(args.big, len(ctx.data.train)), args.iterations, seed=ctx.seed, lr=ctx.lr, batch_size=ctx.batch_size)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_sharpness(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    from steepest.config import load_recipe
    from steepest.diagnose import context_from_recipe
    from steepest.diagnose.sharpness import measure_sharpness
    from steepest.errors import CheckpointError

    if args.run_dir:
        recipe = load_recipe(str(Path(args.run_dir) / "config.yaml"), args.set)
    else:
        recipe = load_recipe(args.recipe, args.set)
    ctx = context_from_recipe(recipe)
    model = ctx.model()
    if args.run_dir:
        path = Path(args.run_dir) / "model.safetensors"
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; sharpness needs a finished run")
        model.load_state_dict(load_file(str(path)))
    x, y = ctx.batch(args.samples_batch)
    result = measure_sharpness(model, ctx.loss_fn, x, y, ctx.lr, args.iterations, args.probes, ctx.seed)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def add_commands(sub) -> dict:
    p = sub.add_parser("doctor", help="run the debugging checklist on a recipe (exit 1 when a check fails)")
    _recipe_args(p)
    p.add_argument("--checks", help="comma-separated subset of checks (add weight_decay for the slow optional one)")
    p.add_argument("--run-dir", help="also diagnose under/overfitting from this finished run's learning curves")
    p.add_argument("--json", help="write the report as JSON here (default: RUN_DIR/doctor.json, else runs/doctor-<recipe>-<time>/)")

    p = sub.add_parser("batch-size", help="gradient noise scale: critical batch size, regime and scaled lr")
    _recipe_args(p)
    p.add_argument("--small", type=int, default=16)
    p.add_argument("--big", type=int, default=512)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=50, help="train this many steps first (the noise scale at init is atypical)")
    p.add_argument("--json")

    p = sub.add_parser("sharpness", help="top Hessian eigenvalue, Hessian trace and the edge-of-stability ratio")
    _recipe_args(p)
    p.add_argument("--run-dir", help="measure the final weights of this finished run")
    p.add_argument("--iterations", type=int, default=100, help="power-iteration steps")
    p.add_argument("--probes", type=int, default=50, help="Hutchinson probe vectors")
    p.add_argument("--samples-batch", type=int, default=512, help="samples in the loss whose Hessian is measured")
    p.add_argument("--json")
    return {"doctor": cmd_doctor, "batch-size": cmd_batch_size, "sharpness": cmd_sharpness}
