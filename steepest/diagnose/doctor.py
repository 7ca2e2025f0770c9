"""`run_doctor`: build the recipe's components and run the checks; `diagnose_fit` reads a finished run."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from steepest.config import Recipe, load_recipe
from steepest.config.build import (
    batch_size_for,
    build_loss,
    build_model_from_recipe,
    build_optimizer,
    loss_name,
    needs_create_graph,
)
from steepest.config.validate import validate_recipe
from steepest.data import load_data
from steepest.data.bundle import in_memory_sample
from steepest.data.containers import DataBundle
from steepest.diagnose._registry import CHECKS
from steepest.diagnose.context import DoctorContext
from steepest.diagnose.report import CheckResult, Report, fail, ok, warn
from steepest.errors import ConfigError, did_you_mean
from steepest.track import MetricStore, read_series
from steepest.training.precision import resolve_device

DOCTOR_SAMPLES = 4096  # per split, for data read sample by sample (the checks run on tensors in memory)


def context_from_recipe(recipe, data=None) -> DoctorContext:
    """The doctor's view of a recipe (a `Recipe`, a bundled name or a YAML path)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(str(recipe), [])
    validate_recipe(recipe)
    device = resolve_device(recipe.trainer.device)
    # Dataset-backed data (image files, streams): a bounded sample read through the training pipeline
    data = in_memory_sample(data or load_data(recipe.data, recipe.trainer.seed), DOCTOR_SAMPLES, recipe.trainer.seed,
                            recipe.data.num_workers).to(device)
    info = data.info
    class_weights = data.class_weights.to(device) if data.class_weights is not None else None
    return DoctorContext(
        make_model=lambda: build_model_from_recipe(recipe, info.input_shape, info.num_outputs, info.tabular),
        data=data,
        loss_fn=build_loss(recipe, info.task, class_weights),
        make_optimizer=lambda model: build_optimizer(recipe, model),
        batch_size=batch_size_for(recipe, len(data.train)),  # in memory by now
        lr=recipe.optimizer.lr or 1e-3,  # a component optimizer with its own default: the doctor probes around 1e-3
        device=device,
        loss_name=loss_name(recipe, info.task) or "",
        seed=recipe.trainer.seed,
        clip_norm=recipe.trainer.clip_norm,
        clip_value=recipe.trainer.clip_value,
        create_graph=needs_create_graph(recipe),
        recipe=recipe,
    )


def context_from_components(model: nn.Module | Callable[[], nn.Module], data: DataBundle, loss_fn: Callable,
                            make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None, *,
                            lr: float = 1e-3, batch_size: int = 64, loss_name: str = "", seed: int = 0) -> DoctorContext:
    """The doctor's view of your own components. `model` is a module (each check gets a fresh copy of
    its current weights) or a zero-argument factory; `loss_name` (e.g. "cross_entropy") lets the
    loss/API check know what the loss expects.

    >>> ctx = context_from_components(net, bundle, torch.nn.functional.cross_entropy, loss_name="cross_entropy")  # doctest: +SKIP
    >>> print(run_doctor(ctx).table())  # doctest: +SKIP
    """
    factory = (lambda: copy.deepcopy(model)) if isinstance(model, nn.Module) else model
    device = next(iter(factory().parameters()), torch.empty(0)).device
    data = in_memory_sample(data, DOCTOR_SAMPLES, seed)
    opt = make_optimizer or (lambda m: torch.optim.Adam(m.parameters(), lr=lr))
    return DoctorContext(factory, data.to(device), loss_fn, opt, batch_size, lr, device, loss_name, seed)


def default_checks() -> list[str]:
    return [n for n in CHECKS.names() if CHECKS.get(n).flags.get("default", True)]


def run_doctor(target, checks: list[str] | None = None) -> Report:
    """Run `checks` (default: every check not marked optional) on a recipe (a `Recipe`, a bundled
    name or a YAML path) or a `DoctorContext` (see `context_from_components`). A check that raises
    is reported as a failure, since the same error would stop training.

    >>> report = run_doctor("digits_mlp", ["forward_shape", "duplicates"])
    >>> report["duplicates"].verdict
    'ok'
    """
    ctx = target if isinstance(target, DoctorContext) else context_from_recipe(target)
    names = checks or default_checks()
    for n in names:
        if n not in CHECKS:
            raise ConfigError(f"doctor --checks: unknown check '{n}';{did_you_mean(n, CHECKS.names())} valid: {', '.join(CHECKS.names())}")
    order = [n for n in CHECKS.in_order() if n in names]
    results: list[CheckResult] = []
    with ctx.threads():
        for name in order:
            try:
                results.append(CHECKS.get(name).target(ctx))
            except Exception as exc:  # a check that crashes is itself a finding about the setup
                results.append(fail(name, f"the check raised {type(exc).__name__}: {exc}", "fix the error above (it will stop training too)"))
    return Report(results)




def diagnose_fit(train_loss: list[tuple[int, float]], val_loss: list[tuple[int, float]], baseline: float | None = None) -> CheckResult:
    """Underfitting vs overfitting from learning curves (the bias/variance reading of learning curves, Ng, "Machine Learning Yearning").

    `baseline` is the loss of a know-nothing predictor (e.g. ln K); a final training loss above half
    of it means the model has not learned the training data."""
    if not train_loss or not val_loss:
        return warn("fit", "not enough logged metrics to judge the fit", "train with evaluation enabled")
    tr = [v for _, v in train_loss if math.isfinite(v)]
    va = [v for _, v in val_loss if math.isfinite(v)]
    final_train = sum(tr[-3:]) / len(tr[-3:])
    best_val, final_val = min(va), va[-1]
    ev = {"final_train_loss": final_train, "best_val_loss": best_val, "final_val_loss": final_val}
    if baseline is not None and final_train > 0.5 * baseline:
        return warn("fit", f"underfitting: training loss {final_train:.3f} stays near the baseline {baseline:.3f}",
                    "use a bigger model, train longer, raise the lr or reduce regularization", **ev)
    if final_val > 1.5 * best_val and final_val > final_train * 2:
        return warn("fit", f"overfitting: val loss rose from {best_val:.3f} to {final_val:.3f} while training loss is {final_train:.3f}",
                    "regularize (weight decay, dropout, augmentation), use early stopping, or get more data", **ev)
    if final_val > 3 * final_train + 0.1:
        return warn("fit", f"overfitting: val loss {final_val:.3f} vs training loss {final_train:.3f}",
                    "regularize (weight decay, dropout, augmentation), use early stopping, or get more data", **ev)
    return ok("fit", f"training {final_train:.3f}, validation {final_val:.3f} (best {best_val:.3f})", **ev)


def diagnose_run(run_dir: str | Path) -> CheckResult:
    run = Path(run_dir)
    db = run / "metrics.db"
    if not db.exists():
        raise ConfigError(f"{run} has no metrics.db; give a run directory written by steepest train")
    try:
        info = json.loads((run / "data_info.json").read_text()) if (run / "data_info.json").exists() else {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        info = {}  # unreadable: judge the curves without a baseline
    info = info if isinstance(info, dict) else {}
    baseline = math.log(info["num_classes"]) if info.get("task") == "classification" and info.get("num_classes") else None
    if info.get("task") == "regression":
        baseline = 1.0  # normalized targets: predicting the mean scores the variance, 1
    return diagnose_fit(read_series(db, "train_loss"), read_series(db, "val_loss"), baseline)


VERDICT_CODE = {"ok": 0.0, "warn": 1.0, "fail": 2.0}  # skipped checks are not logged


def log_verdicts(run_dir: str | Path, report: Report) -> list[str]:
    """Write a doctor report into a run's record: scalars `doctor/<check>` (0 ok, 1 warning,
    2 failure) at the run's last step in `metrics.db` (hence `steepest runs`, the report and
    metrics.csv readers), and, when the run logs to TensorBoard, the same scalars plus the table as
    text in a new event file under `tensorboard/`; when it logs to MLflow, the scalars as metrics of
    its MLflow run and the table as its `doctor` tag (W&B's offline runs are not appended to).
    Returns the places written."""
    run_dir = Path(run_dir)
    values = {f"doctor/{r.name}": VERDICT_CODE[r.verdict] for r in report.results if r.verdict in VERDICT_CODE}
    written: list[str] = []
    db = run_dir / "metrics.db"
    if not values or not db.exists():
        return written
    store = MetricStore(db)
    try:
        step = max((s for name in store.names() for s, _ in store.series(name)), default=0)
        store.log(step, values)
        store.flush()
    finally:
        store.close()
    written.append(str(db))
    if (run_dir / "tensorboard").is_dir():
        from torch.utils.tensorboard import (
            SummaryWriter,  # the tensorboard extra: present when the run wrote there
        )

        writer = SummaryWriter(str(run_dir / "tensorboard"), filename_suffix=".doctor")
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        writer.add_text("doctor", "\n".join(f"    {line}" for line in report.table().splitlines()), step)
        writer.close()
        written.append(str(run_dir / "tensorboard"))
    if (run_dir / "mlflow.db").exists():
        written += _log_to_mlflow(run_dir, values, step, report)
    return written


def _log_to_mlflow(run_dir: Path, values: dict[str, float], step: int, report: Report) -> list[str]:
    """The verdicts as metrics of the run's MLflow run (the latest in its store's "steepest"
    experiment, as `MLflowLogger.for_run` writes it) and the table as its `doctor` tag."""
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError:  # the mlflow extra is gone since the run: metrics.db still has the verdicts
        return []
    store = run_dir / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{store.resolve()}")
    experiment = client.get_experiment_by_name("steepest")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1) if experiment else []
    if not found:
        return []
    run_id, now = found[0].info.run_id, int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, float(value), now, step) for name, value in values.items()])
    client.set_tag(run_id, "doctor", report.table()[:5000])  # MLflow caps a tag at 5000 characters
    return [str(store)]
