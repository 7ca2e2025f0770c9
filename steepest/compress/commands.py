"""`steepest prune` and the report of `steepest export --quantize`. Argument parsing imports only
argparse; torch and the rest load when a command runs.

    steepest prune runs/exp1 --amount 0.5 --rounds 3 --epochs-per-round 2 [--structured] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys

from steepest.config.arguments import add_trust_code_argument


def prune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="finished run directory (written by steepest train)")
    p.add_argument("--amount", type=float, default=0.5,
                   help="final fraction of the weights pruned (of the rows/channels with --structured), in (0, 1); default 0.5")
    p.add_argument("--rounds", type=int, default=3, help="prune -> fine-tune rounds; each prunes the same fraction of the "
                   "weights still there (default 3)")
    p.add_argument("--epochs-per-round", type=int, default=2, help="fine-tuning epochs after each pruning, with the run's "
                   "recipe (default 2; 0: prune only)")
    p.add_argument("--structured", action="store_true", help="prune whole rows of Linear weights and output channels of "
                   "Conv weights (their bias too), per layer, by norm; the output layer is kept whole (default: single weights)")
    p.add_argument("--scope", choices=["global", "layer"], help="unstructured: one magnitude threshold over all layers "
                   "(global, the default) or the same fraction of each layer")
    p.add_argument("--norm", type=int, choices=[1, 2], default=1, help="--structured ranks rows by their L1 (default) or L2 norm")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the fine-tuning recipe, e.g. optimizer.lr=1e-3 (repeatable; model and data keys are refused)")
    p.add_argument("--out", help="the pruned run directory to write (default RUN_DIR-pruned)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    add_trust_code_argument(p)


def prune(args: argparse.Namespace) -> int:
    from steepest.compress.iterative import PRUNE_TABLE, prune_run

    out = args.out or f"{args.run_dir.rstrip('/')}-pruned"
    rows = prune_run(args.run_dir, out, amount=args.amount, rounds=args.rounds, epochs_per_round=args.epochs_per_round,
                     structured=args.structured, scope=args.scope, norm=args.norm, overrides=args.set,
                     trust_code=args.trust_code, overwrite=args.overwrite, log=lambda line: print(line, file=sys.stderr))
    first, last = rows[0], rows[-1]
    key = next(k for k in reversed(list(last)) if k.startswith(("test_", "val_")) and "before" not in k)
    print(f"sparsity {last['sparsity']:.1%}: {key.replace('_', ' ', 1)} {last[key]:.4f} (was {first[key]:.4f})")
    print(f"pruned run: {out} (table: {out}/{PRUNE_TABLE}; steepest predict / export read it)")
    return 0


def quantize_lines(report) -> list[str]:
    """What `steepest export --quantize` prints about a `QuantizeReport`."""
    r = report
    return [
        f"wrote {r.path} (int8, {r.mode}; raw inputs in, onnxruntime)",
        f"  size     {r.fp32_bytes / 1024:,.1f} KiB fp32 -> {r.int8_bytes / 1024:,.1f} KiB int8 ({r.fp32_bytes / r.int8_bytes:.2f}x smaller)",
        f"  latency  {r.fp32_ms:.3f} ms fp32 -> {r.int8_ms:.3f} ms int8 (median of {r.repeats} batches of {r.batch} rows "
        f"after warm-up, {r.threads} CPU thread{'s' if r.threads > 1 else ''})",
        f"  test {r.metric} {r.fp32_metric:.4f} fp32 -> {r.int8_metric:.4f} int8 (drop {r.drop:+.4f}); " + (
            f"the int8 outputs follow the run's predictor with R^2 {r.agreement:.4f} on {r.test_rows} test rows" if r.metric == "r2"
            else f"predictions agree with the run's predictor on {r.agreement:.2%} of {r.test_rows} test rows"),
    ]


def export_quantized(args: argparse.Namespace, fp32_path) -> int:
    """The `--quantize` part of `steepest export`: quantize the fp32 ONNX file just written, print
    the measurements and write them beside the int8 file (same name, .json)."""
    from pathlib import Path

    from steepest.compress.quantize import quantize_run

    report = quantize_run(args.run_dir, fp32_path, args.quantize, args.output, trust_code=args.trust_code)
    Path(report.path).with_suffix(".json").write_text(json.dumps(report.to_dict(), indent=2))
    print("\n".join(quantize_lines(report)))
    return 0
