"""Loggers write what the run's metric store holds, read back with each tool's own reader."""

import csv
import sqlite3

import pytest

from steepest.config import load_recipe
from steepest.run import train
from steepest.training.callbacks.loggers import (
    CSVLogger,
    MLflowLogger,
    TensorBoardLogger,
    flatten_config,
)

SETS = ["trainer.max_steps=12", "trainer.max_epochs=null", "trainer.log_every_n_steps=3", "trainer.eval_every_n_steps=6",
        "checkpoint.enabled=false"]


def store_rows(run):
    with sqlite3.connect(run / "metrics.db") as db:
        return sorted((s, n, v) for s, n, v in db.execute("SELECT step, name, value FROM metrics"))


def test_csv_equals_the_metric_store(tmp_path):
    run = tmp_path / "run"
    train(load_recipe("digits_mlp", SETS), run, console=False, extra_callbacks=[CSVLogger.for_run(run, {})])
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "name", "value"]
    got = sorted((int(s), n, float(v)) for s, n, v in rows[1:])
    assert got == store_rows(run) and len(got) > 8


def test_tensorboard_event_file_holds_the_scalars_at_their_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    recipe = load_recipe("digits_mlp", SETS)
    train(recipe, run, console=False, extra_callbacks=[TensorBoardLogger.for_run(run, recipe.model_dump(mode="json"))])
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    expected = store_rows(run)
    for name in ("train_loss", "lr", "val_loss", "val_accuracy"):
        got = [(e.step, e.value) for e in events.Scalars(name)]
        want = [(s, v) for s, n, v in expected if n == name]
        assert [s for s, _ in got] == [s for s, _ in want] and want, name
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), name


def test_mlflow_store_holds_params_and_metrics(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    recipe = load_recipe("digits_mlp", SETS)
    hparams = {**recipe.model_dump(mode="json"), "extra": {f"k{i}": i for i in range(150)}}  # > 100: several batches
    logger = MLflowLogger.for_run(run, hparams)
    train(recipe, run, console=False, extra_callbacks=[logger])
    client = MlflowClient(tracking_uri=logger.tracking_uri)
    (found,) = client.search_runs([client.get_experiment_by_name("steepest").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params == {k: str(v) for k, v in flatten_config(hparams).items()}
    assert found.data.params["optimizer.name"] == "adamw" and float(found.data.params["optimizer.lr"]) == recipe.optimizer.lr
    history = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "train_loss")]
    want = [(s, v) for s, n, v in store_rows(run) if n == "train_loss"]
    assert [s for s, _ in sorted(history)] == [s for s, _ in want]
    assert [v for _, v in sorted(history)] == pytest.approx([v for _, v in want])


def test_flatten_config_makes_every_value_a_plain_scalar():
    flat = flatten_config({"a": {"b": [1, 2], "c": None, "d": {"e": 1.5}}, "f": True})
    assert flat == {"a.b": "[1, 2]", "a.c": "None", "a.d.e": 1.5, "f": True}


def test_loggers_by_name_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from steepest.cli import main

    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "-q", *[x for s in SETS for x in ("--set", s)],
                 "--set", "trainer.loggers=[tensorboard, csv]"]) == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) and (run / "metrics.csv").exists()


def test_a_logger_whose_package_is_missing_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    from steepest.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["validate", "--set", "trainer.loggers=[csv, wandb]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'steepest[wandb]'" in err and "trainer.loggers.1" in err


def test_train_loss_is_the_mean_of_the_intervals_step_losses(tmp_path):
    from steepest.training.events import Callback

    class StepLosses(Callback):
        name = "step_losses"

        def __init__(self):
            self.losses = {}

        def on_step_end(self, trainer, output):
            self.losses[trainer.state.step] = float(output.loss)

    spy = StepLosses()
    run = tmp_path / "run"
    train(load_recipe("digits_mlp", ["trainer.max_steps=20", "trainer.max_epochs=null", "trainer.log_every_n_steps=5",
                                     "checkpoint.enabled=false"]), run, console=False, extra_callbacks=[spy])
    logged = [(s, v) for s, n, v in store_rows(run) if n == "train_loss"]
    assert [s for s, _ in logged] == [5, 10, 15, 20]
    for step, value in logged:
        interval = [spy.losses[k] for k in range(step - 4, step + 1)]
        assert value == pytest.approx(sum(interval) / 5, rel=1e-6)
    names = {n for _, n, _ in store_rows(run)}
    assert {"lr", "lr/1", "beta1", "weight_decay", "grad_norm", "update_ratio/0", "samples_per_s", "memory_mb", "epoch_seconds"} <= names


def test_tensorboard_histograms_every_n_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    logger = TensorBoardLogger.for_run(run, {}, histograms_every_n_steps=4)
    train(load_recipe("digits_mlp", SETS), run, console=False, extra_callbacks=[logger])
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()["histograms"]
    assert any(t.startswith("gradient/") for t in tags) and any(t.startswith("weight/") for t in tags)
    assert [e.step for e in events.Histograms(tags[0])] == [4, 8, 12]
