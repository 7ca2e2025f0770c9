"""The `steepest` command. User mistakes become one line on stderr and exit code 2.

Every command, core or feature, is one row of `COMMANDS`: its name, the function that runs it and
the function that declares its arguments, both by import path, and its one-line help. Only the
invoked command's modules are imported, so `steepest --help` and `steepest CMD --help` load no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from steepest import __version__
from steepest.errors import SteepestError
from steepest.registry import Registry, import_object

COMMANDS = Registry("command")


def _command(name: str, module: str, function: str, arguments: str, summary: str, description: str = "") -> None:
    COMMANDS.register(name, f"{module}:{function}", arguments=f"{module}:{arguments}", summary=summary, description=description)


CORE = "steepest.commands"
_command("train", CORE, "train", "train_arguments", "train a recipe and print the test metric")
_command("validate", CORE, "validate", "validate_arguments", "check a recipe and print it fully resolved")
_command("runs", CORE, "runs", "runs_arguments", "list runs (sorted, filtered, nested ones too), or diff two runs' recipes")
_command("report", CORE, "report", "report_arguments", "an HTML report of a run (curves, test-split errors, diagnostics), or of several runs overlaid")
_command("predict", CORE, "predict", "predict_arguments", "predict with a finished run (its normalization is applied)")
_command("export", CORE, "export", "export_arguments", "write a finished run as one inference artifact (normalization folded in)")
_command("recipes", CORE, "recipes", "no_arguments", "list the bundled recipes")
_command("events", CORE, "events", "no_arguments", "print the training loop's events in firing order")
_command("data", CORE, "data", "data_arguments", "list data sets and pretrained models, or install a data set")
TUNE = "steepest.tune.commands"
_command("find-lr", TUNE, "find_lr", "find_lr_arguments", "learning-rate range test (or the grid mode) with a suggested lr and a plot")
_command("compare", TUNE, "compare", "compare_arguments", "train one recipe with several optimizers side by side")
_command("search", TUNE, "search", "search_arguments", "hyperparameter search (Optuna) over the recipe's 'search' section")
DIAGNOSE = "steepest.diagnose.commands"
_command("doctor", DIAGNOSE, "doctor", "doctor_arguments",
         "run the debugging checklist on a recipe (exit 0: no failure, 1: a check failed, 2: usage error)",
         "Run the doctor's checks on a recipe; prints a table (verdict, evidence, one-sentence fix) and writes it as JSON. "
         "Exit status: 0 when no check fails (warnings allowed), 1 when a check fails, 2 for usage errors (bad recipe, "
         "unknown check, missing run directory).")
_command("batch-size", DIAGNOSE, "batch_size", "batch_size_arguments", "gradient noise scale: critical batch size, regime and scaled lr")
_command("sharpness", DIAGNOSE, "sharpness", "sharpness_arguments", "top Hessian eigenvalue, Hessian trace and the edge-of-stability ratio")
_command("baseline", DIAGNOSE, "baseline", "baseline_arguments",
         "fit scikit-learn baselines (constant, linear, gradient boosting) on the recipe's split and print them beside the run")
_command("prune", "steepest.compress.commands", "prune", "prune_arguments",
         "prune a finished run (magnitude or structured) and fine-tune it in rounds, into a new run directory")
_command("align", "steepest.align.commands", "align", "align_arguments",
         "instruction tuning (sft), reward model, DPO and generation for a causal LM "
         "(a small byte-level one, or a pretrained Hugging Face model with --model)")


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`steepest runs | head -1`): polled, so that a
    broken pipe of anything else (a worker process) is still reported. True where it cannot be told."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def _quiet_exit_on_closed_stdout() -> int:
    """The reader of stdout stopped reading: exit quietly as a shell's tools do (status 141, killed
    by SIGPIPE), with stdout pointed at devnull so that the interpreter's own flush at exit finds no
    broken pipe (the recipe of Python's `signal` documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    return 141


def _invoked(argv: list[str]) -> str | None:
    """The command name on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every command listed and the invoked one's arguments declared (all of
    them when `argv` is None)."""
    parser = argparse.ArgumentParser(prog="steepest", description="Train PyTorch models well and fast.")
    parser.add_argument("--version", action="version", version=f"steepest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    invoked = None if argv is None else _invoked(argv)
    for name in COMMANDS.in_order():
        record = COMMANDS.get(name)
        p = sub.add_parser(name, help=record.summary, description=record.flags["description"] or record.summary)
        if argv is None or name == invoked:
            import_object(record.flags["arguments"], f"command {name}")(p)
    return parser


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning to the command's user as one line on stderr, without Python's source location."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    if "" not in sys.path and os.getcwd() not in sys.path:  # `component:` paths import from the current directory, as `python -m` would
        sys.path.insert(0, os.getcwd())
    try:
        with warnings.catch_warnings():  # a caller's (or a test runner's) warning hooks come back after the command
            if not sys.warnoptions:  # `python -W ...` keeps Python's own format
                warnings.showwarning = _print_warning
            code = COMMANDS.get(args.command).target(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return code
    except SteepestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # before OSError: `steepest events | head -1` is no error of the user's
        if _stdout_closed():
            return _quiet_exit_on_closed_stdout()
        print("error: a pipe to another process closed (broken pipe); run the command again", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's side: a full disk, a read-only folder, a missing permission
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; free space, fix the permissions or choose another folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
