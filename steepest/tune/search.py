"""Hyperparameter search with Optuna over dotted recipe keys.

    search:
      n_trials: 20
      metric: val_loss            # any validation metric; direction inferred (loss: minimize)
      sampler: tpe                # tpe | random | grid
      pruner: median              # median | none: stop unpromising trials at evaluation points
      space:
        optimizer.lr: {type: float, low: 1e-4, high: 1e-1, log: true}
        model.dropout: {type: float, low: 0.0, high: 0.5}
        data.batch_size: {type: categorical, choices: [32, 64, 128]}

Trials live in an RDB storage (`sqlite:///DIR/study.db` by default), so a search resumes where it
stopped and several processes given the same `--storage` URL and study name search together:

- opening the storage and the study is retried while another worker is creating them (the schema,
  the version rows, the study), so workers may start at the same moment on a new study;
- trial N is sampled with `search.seed + N` (recorded as the trial's `sampler_seed`): the storage
  hands out trial numbers, so workers never draw the same stream, and one worker is reproducible;
- every trial sends Optuna's heartbeat; the next trial of any worker fails a RUNNING trial whose
  heartbeat is older than GRACE_SECONDS (its worker died) and runs its parameters again
  (`RetryHeartbeatStaleTrialCallback`, formerly `RetryFailedTrialCallback`);
- each trial trains in a new folder of its own, `OUT/<study>/trial-<number>` (recorded as the
  trial's `run_dir`; a folder that exists is never trained into), and the study's best recipe is
  `OUT/<study>/best_recipe.yaml`, beside Optuna's plots of the study (PNG files; not drawn when the
  environment variable STEEPEST_NO_REPORT is 1, as `steepest train` then writes no report.html);
- a trial's value is the metric of the weights it keeps (its summary: the final weights, or the best
  ones when early stopping restored them), what retraining `best_recipe.yaml` gives; a trial whose
  value is not finite (or whose run stopped on a non-finite loss, TrainingError) is FAILED, with
  the reason in its `fail_reason`.

One process runs one trial: under torchrun the search refuses (each trial's run would own the
process group; start several workers with --storage instead).
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import random
import re
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from steepest.config import Recipe, recipe_from_dict, recipe_to_dict
from steepest.config.load import apply_overrides
from steepest.config.validate import validate_recipe
from steepest.config.yaml_io import dump_yaml
from steepest.errors import ConfigError, TrainingError
from steepest.run import train
from steepest.training.checkpoint import atomic_write_bytes
from steepest.training.events import Callback
from steepest.training.metrics import metric_mode

HEARTBEAT_SECONDS = 20  # a running trial's heartbeat period
GRACE_SECONDS = 120  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
MAX_RETRY = 2  # runs of a dead worker's trial after the first (a trial that kills its worker each time stops)
OPEN_ATTEMPTS = 12  # tries to open the storage and the study while other workers create them
TORCHRUN_REFUSAL = "steepest search runs one process per trial; start several workers with --storage instead of torchrun"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("steepest search needs Optuna: pip install 'steepest[search]' (or pip install optuna)") from None
    return optuna


def refuse_distributed() -> None:
    """torchrun starts every rank in one process group, but a trial is one run that owns the group
    (`train` creates it and destroys it at the end), so ranks cannot share trials: refuse."""
    from steepest.training.distributed import torchrun_env

    if torchrun_env().enabled:
        raise ConfigError(TORCHRUN_REFUSAL)


class PruningCallback(Callback):
    """Report each validation metric to the trial; stop the run when Optuna prunes it. A
    non-finite value is reported as the worst one for the study's direction."""

    name = "optuna_pruning"

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_eval_end(self, trainer, split, metrics) -> None:
        if split != "val" or self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            value = float("-inf") if self.trial.study.direction.name == "MAXIMIZE" else float("inf")
        self.trial.report(value, trainer.state.step)
        if self.trial.should_prune():
            self.pruned = True
            trainer.state.request_stop(f"pruned by the search at step {trainer.state.step}")


def direction_of(search) -> str:
    if search.direction != "auto":
        return search.direction
    return "maximize" if metric_mode(search.metric) == "max" else "minimize"


def suggest(trial, key: str, param) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def trial_recipe(base: dict, values: dict[str, Any]) -> Recipe:
    data = apply_overrides(base, [])
    for key, value in values.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or node.get(part) is None else None
            if node is None:
                raise ConfigError(f"search.space: '{key}' does not name a recipe key")
        node[last] = value
    data["search"] = None
    data["checkpoint"]["enabled"] = False
    return recipe_from_dict(data)


def _sampler(optuna, search, seed: int):
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        grid = {}
        for key, p in search.space.items():
            if p.type != "categorical":
                raise ConfigError(f"search.space.{key}: the grid sampler needs categorical choices for every parameter")
            grid[key] = p.choices
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _per_trial_sampler(optuna, search):
    """The recipe's sampler, made anew for each trial with seed `search.seed + trial.number`."""

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self):
            self.current = _sampler(optuna, search, search.seed)

        def before_trial(self, study, trial):
            self.current = _sampler(optuna, search, search.seed + trial.number)
            self.current.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.current.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.current.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.current.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self.current.after_trial(study, trial, state, values)

        def reseed_rng(self):
            self.current.reseed_rng()

    return PerTrialSeed()


def _retrying(what: str, url: str, make):
    """`make()`, tried again while other workers are creating the same storage or study (a table or
    row that appeared meanwhile, a locked SQLite file); a storage that cannot be opened is one line."""
    import sqlalchemy.exc as sa

    for attempt in range(OPEN_ATTEMPTS):
        try:
            return make()
        except (sa.OperationalError, sa.IntegrityError, sa.ProgrammingError) as exc:
            error = exc
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
        except (sa.ArgumentError, ImportError, ValueError) as exc:
            raise ConfigError(f"search --storage {url}: {what}: {exc}") from None
        except sa.DatabaseError as exc:  # after its subclasses above: not passing, e.g. a file that is no database
            raise ConfigError(_not_a_database(url, what, exc)) from None
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    raise ConfigError(f"search --storage {url}: {what}: {reason}")


def _not_a_database(url: str, what: str, exc) -> str:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    if url.startswith("sqlite"):
        import sqlalchemy

        path = sqlalchemy.engine.make_url(url).database or url
        return (f"search --storage {url}: {path} is not an Optuna database (SQLite: {reason}); give a new file "
                f"(sqlite:///OUT/study.db is made when --storage is left out) or the study.db of an earlier search")
    return f"search --storage {url}: {what}: {reason}; give the URL of an Optuna database (or leave --storage out)"


def open_storage(optuna, url: str):
    """An RDBStorage with Optuna's heartbeat: trials of dead workers are failed and run again."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback}
    else:
        retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback}

    def make():
        with warnings.catch_warnings():  # the heartbeat and the retry callback are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                              **{k: v(max_retry=MAX_RETRY) for k, v in retry.items()})

    _refuse_missing_sqlite_folder(url)
    return _retrying("cannot open the storage", url, make)


def _refuse_missing_sqlite_folder(url: str) -> None:
    """A SQLite file whose folder does not exist, or that is a folder, is refused at once: SQLite says
    only "unable to open database file", which another worker creating the study never fixes."""
    if not url.startswith("sqlite"):
        return
    import sqlalchemy

    try:
        path = sqlalchemy.engine.make_url(url).database
    except sqlalchemy.exc.ArgumentError:
        return  # _retrying reports a malformed URL
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    where = Path(path)
    if where.is_dir():
        raise ConfigError(f"search --storage {url}: {where} is a folder; give a database file in it (e.g. {where / 'study.db'})")
    if not where.parent.is_dir():
        raise ConfigError(f"search --storage {url}: the folder {where.parent} does not exist; create it, or give a file in an "
                          "existing folder")
    tables = _sqlite_tables(where)
    if tables and "studies" not in tables:  # another program's database (a run's metrics.db): Optuna would add its tables to it
        raise ConfigError(f"search --storage {url}: {where} is a SQLite database of something else (tables "
                          f"{', '.join(sorted(tables)[:4])}); give a new file or an Optuna study database")


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of an existing SQLite file (empty for a missing, empty or unreadable one: left to Optuna to report)."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return set()


def _same_study_recipe(study, base: dict, url: str) -> None:
    """A study holds the trials of one recipe: the first worker records it (a study user attribute), and a later
    search into the same study with another recipe or budget is refused (its trials would be ranked together)."""
    from steepest.training.callbacks.loggers import flatten_config

    recipe = {k: v for k, v in base.items() if k not in ("name", "description")}
    recipe["search"] = {k: v for k, v in (recipe.get("search") or {}).items() if k != "n_trials"}
    recipe = json.loads(json.dumps(recipe, default=str))
    saved = study.user_attrs.get("steepest_recipe")
    if saved is None:
        study.set_user_attr("steepest_recipe", recipe)
        return
    if saved != recipe:
        ours, theirs = flatten_config(recipe), flatten_config(saved)
        keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ConfigError(f"search: study '{study.study_name}' in {url} holds trials of another recipe (differs in "
                          f"{', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}); give another --study or --out, or the same recipe")


def study_dir(out: str | Path, study_name: str) -> Path:
    """OUT/<study>: the study's trial folders and best recipe."""
    return Path(out) / (re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip(".") or "study")


def new_trial_dir(out: str | Path, study_name: str, number: int) -> Path:
    """A folder made for this trial alone: `trial-<number>`, or `trial-<number>-<k>` when that one
    exists (a deleted study's trials, say); mkdir is atomic, so no two trials share one."""
    parent = study_dir(out, study_name)
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        path = parent / (f"trial-{number:04d}" if k == 1 else f"trial-{number:04d}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{parent}: no free folder for trial {number}; give another --out")


def trial_value(summary: dict, metric: str) -> float | None:
    """The trial's value: `metric` of the weights the trial keeps, as its summary reports them (the
    final weights, or the best ones when early stopping restored them), which is what retraining
    `best_recipe.yaml` (the same recipe) gives; None when that value is not finite."""
    value = summary.get(metric)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def validate_space(recipe: Recipe) -> None:
    """Every searched key must produce a valid recipe at its bounds (checked before any trial runs)."""
    search = recipe.search
    if search is None or not search.space:
        raise ConfigError("search.space: nothing to search; add a 'search: {space: {optimizer.lr: {low: 1e-4, high: 1e-1, log: true}}}' section")
    base = recipe_to_dict(recipe)
    for key, p in search.space.items():
        for value in (p.choices or []) if p.type == "categorical" else (p.low, p.high):
            if p.type == "int":
                value = int(value)
            try:
                validate_recipe(trial_recipe(base, {key: value}))
            except ConfigError as exc:
                raise ConfigError(f"search.space.{key} = {value!r}: {exc}") from None


def run_search(recipe: Recipe, out_dir: str | Path, storage: str | None = None, study_name: str | None = None,
               n_trials: int | None = None, console: bool = False):
    """Run the recipe's search (see the module docstring); with `console`, one line per finished
    trial on stderr. Optuna's plots of the study are drawn at the end (`write_plots`) unless the
    environment variable STEEPEST_NO_REPORT is 1. Returns the Optuna study."""
    refuse_distributed()
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 1):
        raise ConfigError(f"search --trials: give a whole number >= 1 (or leave it out for search.n_trials), got {n_trials!r}")
    optuna = _optuna()
    validate_space(recipe)
    search = recipe.search
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or recipe.name or "steepest"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0) if search.pruner == "median" else optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(optuna, url)
    study = _retrying("cannot open the study", url, lambda: optuna.create_study(
        study_name=name, storage=rdb, sampler=_per_trial_sampler(optuna, search), pruner=pruner,
        direction=direction_of(search), load_if_exists=True))
    base = recipe_to_dict(recipe)
    _same_study_recipe(study, base, url)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial):
        run_dir = new_trial_dir(out, name, trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("sampler_seed", search.seed + trial.number)
        trial.set_user_attr("worker", worker)
        values = {key: suggest(trial, key, p) for key, p in search.space.items()}
        pruning = PruningCallback(trial, search.metric)
        try:
            summary = train(trial_recipe(base, values), run_dir, console=False, extra_callbacks=[pruning])
        except TrainingError as exc:  # the run could not go on (a non-finite loss): this trial fails, the search goes on
            trial.set_user_attr("fail_reason", str(exc))
            return float("nan")  # Optuna records a NaN objective as FAIL
        if pruning.pruned:
            raise optuna.TrialPruned()
        value = trial_value(summary, search.metric)
        if value is None:
            trial.set_user_attr("fail_reason", f"no finite {search.metric} for the weights the trial kept")
            return float("nan")
        return value

    callbacks = [_print_trial(search.metric)] if console else []
    study.optimize(objective, n_trials=search.n_trials if n_trials is None else n_trials, timeout=search.timeout_seconds, callbacks=callbacks)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("search: no trial completed; widen the space or lower pruning (search.pruner: none)")
    best = trial_recipe(base, study.best_params)
    best_dict = recipe_to_dict(best)
    best_dict["checkpoint"]["enabled"] = True
    atomic_write_bytes(best_recipe_path(out, study), dump_yaml(best_dict).encode())
    if os.environ.get("STEEPEST_NO_REPORT") != "1":  # as `steepest train` skips report.html
        write_plots(study, study_dir(out, study.study_name))
    return study


def _print_trial(metric: str):
    """An Optuna callback: one line per finished trial (complete, pruned or failed)."""

    def report(study, trial) -> None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        state = trial.state.name.lower()
        if state == "complete":
            what = f"{metric} {trial.value:.4g}" + (" (best so far)" if study.best_trial.number == trial.number else "")
        elif state == "pruned":
            steps = max(trial.intermediate_values, default=0)
            what = f"pruned at step {steps}"
        else:
            what = f"failed: {trial.user_attrs.get('fail_reason', 'see its run directory')}"
        print(f"trial {trial.number:>3} {what} | {params} ({seconds:.1f} s)", file=sys.stderr)

    return report


def write_plots(study, folder: str | Path) -> list[Path]:
    """Optuna's own plots of the study as PNG files in `folder` (optimization history, parameter
    importances, parallel coordinates); a plot the study cannot have yet (too few complete trials,
    one parameter) is left out. For a live view: `optuna-dashboard sqlite:///OUT/study.db`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as plots
    except ImportError:
        return []
    written = []
    for name, draw in (("optimization_history", plots.plot_optimization_history),
                       ("param_importances", plots.plot_param_importances),
                       ("parallel_coordinate", plots.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        figure = (ax[0] if hasattr(ax, "__len__") else ax).figure
        path = Path(folder) / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def best_recipe_path(out: str | Path, study) -> Path:
    return study_dir(out, study.study_name) / "best_recipe.yaml"


def format_trials(study) -> str:
    keys = sorted({k for t in study.trials for k in t.params})
    notes = {t.number: _note(t) for t in study.trials}
    extra = any(notes.values())
    lines = ["| trial | state | value | " + " | ".join(keys) + " |" + (" note |" if extra else ""),
             "|" + "---|" * (3 + len(keys) + extra)]
    for t in study.trials:
        value = "-" if t.value is None else f"{t.value:.4g}"
        params = " | ".join(f"{t.params[k]:.3g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, "-")) for k in keys)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | {params} |" + (f" {notes[t.number]} |" if extra else ""))
    return "\n".join(lines)


def _note(trial) -> str:
    if trial.state.name == "FAIL":
        return trial.user_attrs.get("fail_reason") or "no result (an error, or its worker stopped)"
    retried = trial.system_attrs.get("failed_trial")
    return f"retry of trial {retried}" if retried is not None else ""
