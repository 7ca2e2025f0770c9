"""Loggers: every scalar a run logs (the `on_log` event: train loss, lr, gradient norm, validation
metrics, ...) also written where the user's tools read it, through the maintained libraries:

    tensorboard  torch.utils.tensorboard.SummaryWriter: an event file `tensorboard --logdir` reads
    csv          metrics.csv: one row per (step, name, value), the same rows as the run's metrics.db
    mlflow       an MLflow run in a local SQLite tracking store (RUN_DIR/mlflow.db)
    wandb        a Weights & Biases run in offline mode (`wandb sync` uploads it later, if ever)

Each writes on the main process only. The resolved recipe goes to each logger's hyperparameter
API (flattened to dotted keys). tensorboard, mlflow and wandb are optional extras; a missing one is
a one-line error with the install command.

    trainer: {loggers: [tensorboard, csv]}       # in a recipe; files go into the run directory
"""

from __future__ import annotations

import csv
import importlib
import math
import time
from pathlib import Path
from typing import Any

from steepest.errors import ConfigError
from steepest.training.events import Callback


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested recipe -> {"optimizer.lr": 0.003, ...}; lists and None become text (what every
    hyperparameter API accepts).

    >>> flatten_config({"optimizer": {"name": "adamw", "lr": 0.003}, "model": {"hidden": [128, 64]}})
    {'optimizer.name': 'adamw', 'optimizer.lr': 0.003, 'model.hidden': '[128, 64]'}
    """
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _require(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"the {extra} logger needs the {extra} package: pip install 'steepest[{extra}]'") from None


class _Histograms:
    """Parameter and gradient histograms every `every` steps (what `wandb.watch` gives): gradients
    when they are complete (before clipping), weights after the step."""

    every: int | None = None

    def _due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def on_before_optimizer_step(self, trainer) -> None:
        if self._due(trainer.state.step + 1):  # a step skipped for a NaN loss comes here too: non-finite gradients are left out
            self._histograms(trainer.state.step + 1, "gradient", {n: p.grad for n, p in trainer.unwrapped_model.named_parameters()
                                                                   if p.grad is not None and bool(p.grad.isfinite().all())})

    def on_step_end(self, trainer, output) -> None:
        if self._due(trainer.state.step):
            self._histograms(trainer.state.step, "weight", dict(trainer.unwrapped_model.named_parameters()))

    def _histograms(self, step: int, kind: str, tensors: dict) -> None:
        raise NotImplementedError


class TensorBoardLogger(_Histograms, Callback):
    """Scalars into a TensorBoard event file under `log_dir` (step = optimizer step), the
    hyperparameters with the final metrics at the end (the HPARAMS tab), and weight and gradient
    histograms every `histograms_every_n_steps` steps when set."""

    name = "tensorboard"

    def __init__(self, log_dir: str | Path, hparams: dict[str, Any] | None = None, histograms_every_n_steps: int | None = None):
        self.every = histograms_every_n_steps
        self.log_dir, self.hparams = Path(log_dir), hparams or {}
        self.writer = None
        self.fitting = False
        self.last: dict[str, float] = {}
        _require("tensorboard", "tensorboard")

    @classmethod
    def for_run(cls, run_dir: Path, hparams: dict[str, Any], histograms_every_n_steps: int | None = None) -> TensorBoardLogger:
        return cls(Path(run_dir) / "tensorboard", hparams, histograms_every_n_steps)

    def _histograms(self, step: int, kind: str, tensors: dict) -> None:
        if self.writer is not None:
            for name, t in tensors.items():
                self.writer.add_histogram(f"{kind}/{name}", t.detach().float().cpu(), step)

    def on_fit_start(self, trainer) -> None:
        self.fitting = True
        if trainer.is_main_process and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
            self.last[key] = value
        if not self.fitting:
            self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        finite = {k: v for k, v in self.last.items() if math.isfinite(v)}
        for summary in hparams(flatten_config(self.hparams), finite):  # what SummaryWriter.add_hparams writes, in this run's file
            self.writer.file_writer.add_summary(summary)
        self.fitting = False
        self.writer.flush()  # kept open: the final test evaluation is logged after training ends

    def on_exception(self, trainer, exc: BaseException) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class CSVLogger(Callback):
    """`path` (metrics.csv): a header `step,name,value`, then one row per logged scalar, appended
    after every evaluation, at the end of training and for anything logged after it (the final
    test evaluation)."""

    name = "csv"

    def __init__(self, path: str | Path, hparams: dict[str, Any] | None = None):
        self.path = Path(path)
        self.pending: list[list] = []
        self.started = self.fitting = False

    @classmethod
    def for_run(cls, run_dir: Path, hparams: dict[str, Any], histograms_every_n_steps: int | None = None) -> CSVLogger:
        return cls(Path(run_dir) / "metrics.csv", hparams)

    def on_fit_start(self, trainer) -> None:
        self.fitting = True
        if not trainer.is_main_process or self.started:
            return
        kept = []
        if trainer.state.step > 0 and self.path.exists():  # a resumed run logs the steps after its checkpoint again
            with self.path.open(newline="") as f:
                kept = [row for row in list(csv.reader(f))[1:] if row and int(row[0]) <= trainer.state.step]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows([["step", "name", "value"], *kept])
        self.started = True

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if self.started:
            self.pending += [[step, key, repr(float(value))] for key, value in values.items()]
            if not self.fitting:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerows(self.pending)
            self.pending = []

    def on_eval_end(self, trainer, split: str, metrics: dict[str, float]) -> None:
        self.flush()

    def on_fit_end(self, trainer) -> None:
        self.fitting = False
        self.flush()

    on_exception = lambda self, trainer, exc: self.on_fit_end(trainer)  # noqa: E731


class MLflowLogger(Callback):
    """An MLflow run in the tracking store `tracking_uri` (for a run: `sqlite:///RUN_DIR/mlflow.db`,
    the local store MLflow recommends; `mlflow ui --backend-store-uri` reads it): the recipe as
    params, every scalar as a metric at its step."""

    name = "mlflow"

    def __init__(self, tracking_uri: str, hparams: dict[str, Any] | None = None, experiment: str = "steepest",
                 run_name: str | None = None):
        self.tracking_uri, self.hparams, self.experiment, self.run_name = tracking_uri, hparams or {}, experiment, run_name
        self.client = self.run_id = None
        _require("mlflow", "mlflow")

    @classmethod
    def for_run(cls, run_dir: Path, hparams: dict[str, Any], histograms_every_n_steps: int | None = None) -> MLflowLogger:
        return cls(f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}", hparams, run_name=Path(run_dir).name)

    def on_fit_start(self, trainer) -> None:
        if not trainer.is_main_process or self.client is not None:
            return
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in flatten_config(self.hparams).items()]
        for first in range(0, len(params), 100):  # one transaction per 100 (MLflow's batch limit), not per key: ~2 s less
            self.client.log_batch(self.run_id, params=params[first:first + 100])

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def on_fit_end(self, trainer) -> None:
        if self.client is not None:  # the final test metrics are still logged to the finished run
            self.client.set_terminated(self.run_id, "FINISHED")

    def on_exception(self, trainer, exc: BaseException) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id, "FAILED")
            self.client = None


class WandbLogger(_Histograms, Callback):
    """A Weights & Biases run in offline mode under `log_dir` (nothing goes over the network):
    the recipe as its config, every scalar logged at its step, histograms every
    `histograms_every_n_steps` steps when set. The run is finished by wandb's own exit hook, after
    the final test evaluation is logged."""

    name = "wandb"

    def __init__(self, log_dir: str | Path, hparams: dict[str, Any] | None = None, project: str = "steepest",
                 histograms_every_n_steps: int | None = None):
        self.every = histograms_every_n_steps
        self.log_dir, self.hparams, self.project = Path(log_dir), hparams or {}, project
        self.run = None
        self.wandb = _require("wandb", "wandb")

    @classmethod
    def for_run(cls, run_dir: Path, hparams: dict[str, Any], histograms_every_n_steps: int | None = None) -> WandbLogger:
        return cls(Path(run_dir) / "wandb", hparams, histograms_every_n_steps=histograms_every_n_steps)

    def _histograms(self, step: int, kind: str, tensors: dict) -> None:
        if self.run is not None:
            self.run.log({f"{kind}/{n}": self.wandb.Histogram(t.detach().float().cpu().numpy()) for n, t in tensors.items()}, step=step)

    def on_fit_start(self, trainer) -> None:
        if trainer.is_main_process and self.run is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.run = self.wandb.init(project=self.project, dir=str(self.log_dir), mode="offline",
                                       config=flatten_config(self.hparams), reinit=True)

    def on_log(self, trainer, step: int, values: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def on_exception(self, trainer, exc: BaseException) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1)
            self.run = None
