"""`steepest doctor`, `steepest batch-size` and `steepest sharpness`: each a pair of functions, the
arguments and the command (see `steepest.cli.COMMANDS`); torch is imported when a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steepest.config.arguments import (
    add_recipe_arguments,
    add_trust_code_argument,
    recipe_from_arguments,
    whole_number,
)


def doctor(args: argparse.Namespace) -> int:
    """Exit status: 0 when no check fails (warnings allowed), 1 when one fails, 2 for usage errors."""
    from steepest.diagnose import diagnose_run, run_doctor
    from steepest.diagnose.report import Report

    run = _finished_run(args)
    _check_json(args, "doctor.json")
    if run and not (args.recipe or args.set or args.checks):
        recipe, report = None, Report([diagnose_run(run)])  # a finished run: the learning curves only
    else:
        recipe = recipe_from_arguments(args, run)
        if run:
            _same_data(recipe, run, args)
        checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
        report = run_doctor(recipe, checks)
        if run:
            report.results.append(diagnose_run(run))
    if run:
        report.results.append(_against_baselines(run))
    print(report.table())
    if args.json:
        out = Path(args.json)
    elif run:
        out = run / "doctor.json"
    else:
        from steepest.track import default_run_dir

        out = default_run_dir(f"doctor-{recipe.name}") / "doctor.json"
    _write_file(out, report.to_json())
    print(f"report: {out}")
    if run:
        from steepest.diagnose.doctor import log_verdicts

        for place in log_verdicts(run, report):
            print(f"verdicts logged: {place}")
    return 1 if report.failed else 0


def _against_baselines(run: Path):
    """The run's test metric against the baselines `steepest baseline --run-dir` wrote (skip without them)."""
    from steepest.diagnose.baselines import BaselineScores, compare_with_run
    from steepest.diagnose.report import skip

    path, summary, info = run / "baselines.json", run / "summary.json", run / "data_info.json"
    if not (path.exists() and summary.exists() and info.exists()):
        return skip("baselines", f"no baselines.json in {run}: `steepest baseline --run-dir {run}` fits them")
    try:
        rows = json.loads(path.read_text())
        results = [BaselineScores(r["name"], {k: v for k, v in r.items() if k != "name"}) for r in rows]
        return compare_with_run(results, json.loads(info.read_text())["task"], json.loads(summary.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return skip("baselines", f"{path} cannot be read; run `steepest baseline --run-dir {run}` again")


def _finished_run(args: argparse.Namespace) -> Path | None:
    """--run-dir as a Path, after checking it is a run directory (config.yaml or metrics.db) before anything is computed or
    written."""
    if not args.run_dir:
        return None
    from steepest.config.arguments import RUN_CONFIG
    from steepest.errors import ConfigError

    run = Path(args.run_dir)
    if not ((run / RUN_CONFIG).is_file() or (run / "metrics.db").is_file()):  # a recipe run's, or steepest.fit's
        what = ("does not exist" if not run.exists() else "is not a folder" if not run.is_dir()
                else f"is not a run directory (no {RUN_CONFIG} or metrics.db)")
        raise ConfigError(f"--run-dir {run} {what}; give the folder of a finished steepest train run")
    return run


def _same_data(recipe, run: Path, args: argparse.Namespace) -> None:
    """A recipe named beside --run-dir must read the run's data: results of other data written into the run would
    read as its own."""
    if args.recipe is None:
        return
    from steepest.config.arguments import RUN_CONFIG
    from steepest.config.load import recipe_to_dict
    from steepest.config.yaml_io import read_yaml
    from steepest.errors import ConfigError

    loading = {"batch_size", "eval_batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "drop_last",
               "multiprocessing_context"}  # how the data is read, not which

    def which(data: dict) -> dict:
        return {k: v for k, v in data.items() if k not in loading}

    saved = (read_yaml(run / RUN_CONFIG) or {}).get("data")
    if isinstance(saved, dict) and which(recipe_to_dict(recipe).get("data") or {}) != which(saved):
        raise ConfigError(f"recipe {args.recipe} reads other data than the run {run} (its {RUN_CONFIG}); leave the recipe out to use "
                          "the run's own, or drop --run-dir")


def _recipe_and_model(args: argparse.Namespace):
    """The recipe's context and a model: the final weights of `--run-dir` (its config.yaml unless a
    recipe is named; component paths there need --trust-code), else a fresh one."""
    from safetensors.torch import load_file

    from steepest.diagnose import context_from_recipe
    from steepest.errors import CheckpointError

    run = _finished_run(args)
    recipe = recipe_from_arguments(args, run)
    ctx = context_from_recipe(recipe)
    model = ctx.model()
    if run:
        path = run / "model.safetensors"
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give the directory of a finished steepest train run")
        try:
            model.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:  # another architecture than the run's: the recipe or --set differs from its config.yaml
            first = str(exc).strip().splitlines()
            raise CheckpointError(f"{path} does not fit the model of the recipe given ({first[-1].strip() if first else exc}); "
                                  "leave the recipe and model --set out to use the run's own config.yaml") from None
    return ctx, model


def _check_json(args: argparse.Namespace, name: str) -> None:
    """Before the work: --json may not be a folder or one of the --run-dir run's own files
    (config.yaml, model.safetensors, a checkpoint, ...); `name` is the file written without it."""
    if args.json is not None:
        from steepest.run.directory import refuse_output

        refuse_output([args.run_dir] if args.run_dir else [], args.json, "--json", name)


def _write_file(out: Path, text: str) -> None:
    """`text` into `out` atomically (its folder made when missing); a failed write is one line."""

    from steepest.errors import SteepestError
    from steepest.training.checkpoint import atomic_write_bytes

    target = out.resolve() if out.is_symlink() else out
    try:
        atomic_write_bytes(target, text.encode())
    except OSError as exc:
        raise SteepestError(f"cannot write {out}: {exc.strerror or exc}; free space, fix the permissions or choose another "
                            "file with --json") from None


def _write_json(args: argparse.Namespace, name: str, payload) -> None:
    out = Path(args.json) if args.json else (Path(args.run_dir) / name if args.run_dir else None)
    if out is not None:
        _write_file(out, json.dumps(payload, indent=2))
        print(f"report: {out}")


def batch_size(args: argparse.Namespace) -> int:
    from steepest.errors import ConfigError
    from steepest.tune.batch_size import estimate_noise_scale, sampler_from

    if args.small < 1 or args.big <= args.small:
        raise ConfigError(f"batch-size: need 1 <= --small ({args.small}) < --big ({args.big})")
    _check_json(args, "batch_size.json")
    ctx, model = _recipe_and_model(args)
    train = ctx.data.train
    if args.warmup_steps and not args.run_dir:
        ctx.fit(model, train.x, train.y, args.warmup_steps, lr=ctx.lr, optimizer="recipe", batch=ctx.batch_size)
    big = min(args.big, len(train))
    if big <= args.small:
        raise ConfigError(f"batch-size: the training split has {len(train)} samples; --small must be below that")
    with ctx.threads():
        result = estimate_noise_scale(model, ctx.loss_fn, sampler_from(train.x, train.y), args.small, big, args.iterations,
                                      seed=ctx.seed, lr=ctx.lr, batch_size=ctx.batch_size)
    print(result.summary())
    _write_json(args, "batch_size.json", result.to_dict())
    return 0


def sharpness(args: argparse.Namespace) -> int:
    from steepest.diagnose.sharpness import measure_sharpness

    _check_json(args, "sharpness.json")
    ctx, model = _recipe_and_model(args)
    x, y = ctx.batch(args.samples_batch)
    with ctx.threads():
        result = measure_sharpness(model, ctx.loss_fn, x, y, ctx.lr, args.iterations, args.probes, ctx.seed)
    print(result.summary())
    _write_json(args, "sharpness.json", result.to_dict())
    return 0


def baseline(args: argparse.Namespace) -> int:
    from steepest.data import load_data
    from steepest.diagnose.baselines import compare_with_run, fit_baselines, table

    run = _finished_run(args)
    _check_json(args, "baselines.json")
    recipe = recipe_from_arguments(args, run)
    if run:
        _same_data(recipe, run, args)
    data = load_data(recipe.data, recipe.trainer.seed)
    try:
        results = fit_baselines(data, recipe.trainer.seed)
    except ValueError as exc:
        from steepest.errors import ConfigError

        raise ConfigError(f"baseline: {exc}") from None
    network = None
    if run is not None and (run / "summary.json").exists():
        network = json.loads((run / "summary.json").read_text())
    print(table(results, network))
    if network is not None:
        verdict = compare_with_run(results, data.info.task, network)
        print(f"\n{verdict.verdict}: {verdict.summary}" + (f"\nfix: {verdict.fix}" if verdict.fix else ""))
    _write_json(args, "baselines.json", [{"name": r.name, **r.scores} for r in results])
    return 0


def baseline_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--run-dir", help="a finished run: its recipe (config.yaml) and split, and its test metrics beside the baselines; "
                                     "baselines.json is written there (the doctor compares with it)")
    p.add_argument("--json", help="write the scores as JSON here (default: RUN_DIR/baselines.json)")
    add_trust_code_argument(p)


def doctor_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--checks", help="comma-separated subset of checks (add weight_decay for the slow optional one)")
    p.add_argument("--run-dir", help="diagnose under/overfitting from this finished run's learning curves (metrics.db); "
                                     "with a recipe, --set or --checks also run the checks (recipe default: the run's config.yaml)")
    p.add_argument("--json", help="write the report as JSON here (default: RUN_DIR/doctor.json, else runs/doctor-<recipe>-<time>/)")
    add_trust_code_argument(p)


def batch_size_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--run-dir", help="measure at this finished run's final weights (recipe: its config.yaml)")
    p.add_argument("--small", type=whole_number(1), default=16, help="small batch size")
    p.add_argument("--big", type=whole_number(2), default=512, help="big batch size (at most the training split)")
    p.add_argument("--iterations", type=whole_number(1), default=30, help="pairs of gradients averaged")
    p.add_argument("--warmup-steps", type=whole_number(0), default=50,
                   help="without --run-dir, train this many steps first (the noise scale at init is atypical; 0: none)")
    p.add_argument("--json", help="write the result as JSON here (default with --run-dir: RUN_DIR/batch_size.json)")
    add_trust_code_argument(p)


def sharpness_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--run-dir", help="measure the final weights of this finished run")
    p.add_argument("--iterations", type=whole_number(1), default=100, help="power-iteration steps")
    p.add_argument("--probes", type=whole_number(1), default=50, help="Hutchinson probe vectors")
    p.add_argument("--samples-batch", type=whole_number(1), default=512, help="samples in the loss whose Hessian is measured")
    p.add_argument("--json", help="write the result as JSON here (default with --run-dir: RUN_DIR/sharpness.json)")
    add_trust_code_argument(p)
