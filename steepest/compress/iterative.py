"""Iterative pruning of a finished run: prune, fine-tune with the run's own recipe and data, repeat;
then a new run directory with the sparse weights made permanent (Han et al. 2015, "Learning both
Weights and Connections for Efficient Neural Networks", section 3.3: iterative pruning and
retraining keeps more accuracy than pruning once).

Round k (1..rounds) prunes the same fraction of the weights still there, so the sparsity after it
is 1 - (1 - amount)^(k/rounds) and exactly `amount` (to one weight) after the last
(`steepest.compress.prune.round_targets`); then it fine-tunes for `epochs_per_round` epochs: the
run's recipe (optimizer, schedule, loss, regularization, seed) built afresh by
`steepest.run.build_run` on the run's data, loaded with the current weights and masks. The masks
stay on during fine-tuning, so pruned weights stay zero.

    steepest prune runs/exp1 --amount 0.5 --rounds 3 --epochs-per-round 2     # -> runs/exp1-pruned

The new run directory holds what `steepest predict` and `steepest export` read: config.yaml and
data_info.json copied unchanged, model.safetensors (plain parameters with the zeros: `prune.remove`
applied), plus prune.json (one row per round: sparsity, and the val/test metric before and after
fine-tuning; round 0 is the run as it was) and summary.json.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from steepest.compress.prune import (
    apply_masks,
    make_permanent,
    masks,
    prune_to,
    round_targets,
    rows_pruned,
    sparsity,
)
from steepest.config import Recipe, apply_overrides, recipe_from_dict, recipe_to_dict
from steepest.config.arguments import RUN_CONFIG
from steepest.config.load import load_run_recipe
from steepest.data import DataBundle, load_data
from steepest.data.containers import split_size
from steepest.errors import ConfigError, DataError
from steepest.predict import Predictor
from steepest.run import build_run
from steepest.run.directory import DATA_INFO, prepare_run_dir, release_run_dir
from steepest.training.checkpoint import atomic_write_bytes

PRUNE_TABLE = "prune.json"


HEADLINE = ("accuracy", "r2", "recall_at_1")  # the metric a pruning table reports: the first the run's evaluation has


def headline_metric(metrics: dict[str, float], split: str) -> str:
    """The metric a pruning table reports, from one evaluation's results: accuracy (classification,
    binary, multilabel), r2 (regression), recall_at_1 (embeddings), else the loss.

    >>> headline_metric({"test_loss": 0.3, "test_r2": 0.9}, "test")
    'r2'
    """
    return next((m for m in HEADLINE if f"{split}_{m}" in metrics), "loss")


def finetune_recipe(recipe: Recipe, epochs: int, overrides: list[str] | None = None) -> Recipe:
    """The run's recipe as one fine-tuning round runs it: `epochs` epochs (no step budget), no
    checkpoints, no compile, no `finetune` section (the weights come from the run, already merged),
    with `overrides` (dotted KEY=VALUE, e.g. optimizer.lr=1e-3) applied; `model.*` overrides are
    refused (the saved config.yaml must rebuild these weights)."""
    bad = [o for o in overrides or [] if o.split("=", 1)[0].strip().startswith(("model.", "data."))]
    if bad:
        raise ConfigError(f"--set {bad[0]}: pruning keeps the run's model and data; override the training only "
                          "(optimizer, schedule, loss, trainer)")
    data = apply_overrides(recipe_to_dict(recipe), list(overrides or []))
    data["trainer"].update(max_epochs=max(epochs, 1), max_steps=None, compile=False, progress="off", loggers=[])
    data["checkpoint"]["enabled"] = False
    data["finetune"] = None
    data["search"] = None
    return recipe_from_dict(data, "the fine-tuning recipe")


def _same_data(loaded: DataBundle, saved) -> None:
    """The data loaded now must be what the run trained on (same shapes and normalization)."""
    for key in ("input_shape", "num_outputs", "x_norm", "y_norm"):
        now, then = getattr(loaded.info, key), getattr(saved, key)
        if (tuple(now) if key == "input_shape" else now) != (tuple(then) if key == "input_shape" else then):
            raise DataError(f"the run's data has changed since it trained ({key} differs from its {DATA_INFO}); "
                            "pruning fine-tunes on the same data")


def prune_run(run_dir: str | Path, out: str | Path | None = None, *, amount: float = 0.5, rounds: int = 3,
              epochs_per_round: int = 2, structured: bool = False, scope: str | None = None, norm: int = 1,
              overrides: list[str] | None = None, trust_code: bool = False, overwrite: bool = False,
              log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Prune the finished run in `run_dir` to `amount` (fraction of the prunable weights, or of the
    rows/channels when `structured`) over `rounds` rounds of prune -> fine-tune, and write the result
    to `out` (default: RUN_DIR-pruned). Returns prune.json's rows.

    `scope`: "global" (default for unstructured: one magnitude threshold over all layers) or
    "layer" (the same fraction of each layer; always so for structured). `norm`: 1 or 2, the
    row norm structured pruning ranks by. `epochs_per_round=0` prunes without fine-tuning.
    `log` receives one line per round. Errors: CheckpointError for a run directory that is not a
    finished run, ConfigError for bad arguments, a refused `component:` path (`trust_code`) or an
    `out` that holds another run (unless `overwrite`), DataError when the run's data changed."""
    run_dir = Path(run_dir)
    scope = scope or ("layer" if structured else "global")
    if structured and scope != "layer":
        raise ConfigError("structured pruning is per layer (row norms of different layers are not comparable); drop --scope global")
    if epochs_per_round < 0:
        raise ConfigError(f"--epochs-per-round must be 0 or more, got {epochs_per_round}")
    targets = round_targets(amount, rounds)
    predictor = Predictor.load(run_dir, trust_code=trust_code)  # the run's files, checked; the recipe, vetted
    recipe = load_run_recipe(run_dir / RUN_CONFIG, trust_code=trust_code)
    tuned = finetune_recipe(recipe, epochs_per_round, overrides)
    out = Path(out) if out is not None else run_dir.with_name(run_dir.name + "-pruned")
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out must be a new folder; pruning never overwrites the run it starts from")
    try:
        prepare_run_dir(out, overwrite=overwrite)  # before the work: a refused folder costs nothing; locked until the end
    except ConfigError as exc:  # in prune's options: --out and --overwrite, no --resume
        message = str(exc).replace("continue it with --resume, replace it with --overwrite", "replace it with --overwrite")
        raise ConfigError(message.replace("--run-dir", "--out")) from None
    try:
        started = time.time()
        data = load_data(recipe.data, recipe.trainer.seed)
        _same_data(data, predictor.info)
        metric: str | None = None
        state = {name: v.detach().clone() for name, v in predictor.model.state_dict().items()}
        carried: dict[str, torch.Tensor] = {}
        rows: list[dict[str, Any]] = []
        for k, target in enumerate([0.0, *targets]):
            run = build_run(tuned, None, data=data, console=False)
            trainer, model = run.trainer, run.trainer.unwrapped_model
            model.load_state_dict(state)  # the optimizer holds these Parameters; pruning keeps them (as weight_orig)
            splits = [s for s in ("val", "test") if split_size(getattr(run.data, s)) != 0]  # data.split may leave one empty
            if not splits:
                raise DataError("the run has no validation or test split to measure the pruned model on")
            if metric is None:
                metric = headline_metric(trainer.evaluate(splits[-1]), splits[-1])
            row: dict[str, Any] = {"round": k, "target": round(target, 6)}
            if k > 0:
                apply_masks(model, carried)
                prune_to(model, target, structured=structured, scope=scope, norm=norm)
                row[f"{splits[-1]}_{metric}_before_finetune"] = trainer.evaluate(splits[-1])[f"{splits[-1]}_{metric}"]
                if epochs_per_round:
                    trainer.fit()
                carried = masks(model)
                make_permanent(model)
            row["sparsity"] = sparsity(model, structured)
            if structured:
                row["rows_pruned"] = rows_pruned(model)
            row["nonzero_parameters"] = sum(int((p != 0).sum()) for p in model.parameters())
            for split in splits:
                row[f"{split}_{metric}"] = trainer.evaluate(split)[f"{split}_{metric}"]
            rows.append(row)
            state = {name: v.detach().cpu().clone() for name, v in model.state_dict().items()}
            if log is not None:
                log(format_row(row, metric, splits))
        _write(out, run_dir, state, rows, predictor.info, dict(amount=amount, rounds=rounds, epochs_per_round=epochs_per_round,
               structured=structured, scope=scope, norm=norm, overrides=list(overrides or []),
               wall_seconds=round(time.time() - started, 3)))
    finally:
        release_run_dir(out)
    return rows


def format_row(row: dict[str, Any], metric: str, splits: list[str]) -> str:
    """One line of the pruning table."""
    before = row.get(f"{splits[-1]}_{metric}_before_finetune")
    rows = f", rows pruned {row['rows_pruned']:.1%}" if "rows_pruned" in row else ""
    pruned = f" (after pruning, before fine-tuning {before:.4f})" if before is not None else " (the run as trained)"
    scores = " | ".join(f"{s} {metric} {row[f'{s}_{metric}']:.4f}" for s in splits)
    return f"round {row['round']}: sparsity {row['sparsity']:.1%}{rows} | {scores}{pruned}"


def _write(out: Path, run_dir: Path, state: dict[str, torch.Tensor], rows: list[dict[str, Any]], info, settings: dict) -> None:
    """The pruned run directory: the run's config.yaml and data_info.json copied unchanged, the
    permanent sparse weights, prune.json and summary.json."""
    for name in (RUN_CONFIG, DATA_INFO):
        shutil.copyfile(run_dir / name, out / name)
    weights = {k: v.contiguous() for k, v in state.items()}
    atomic_write_bytes(out / "model.safetensors", st_save(weights, metadata={"data_info": json.dumps(info.to_dict())}))
    table = {"pruned_from": str(run_dir), **settings, "rounds_table": rows}
    atomic_write_bytes(out / PRUNE_TABLE, json.dumps(table, indent=2).encode())
    last = rows[-1]
    summary = {"status": "completed", "task": info.task, "data": info.source, "pruned_from": str(run_dir),
               "sparsity": last["sparsity"], "nonzero_parameters": last["nonzero_parameters"],
               **{k: v for k, v in last.items() if k.startswith(("val_", "test_")) and "before" not in k}}
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
