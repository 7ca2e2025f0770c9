import math

import pytest
import torch

from steepest.cli import main
from steepest.config import load_recipe
from steepest.run import build_run
from steepest.training.callbacks import EarlyStopping
from steepest.training.events import EVENTS, Callback


class Recorder(Callback):
    name = "recorder"

    def __init__(self):
        self.seen = []

    def __getattribute__(self, item):
        if item.startswith("on_") and item in EVENTS:
            seen = object.__getattribute__(self, "seen")
            return lambda trainer, *a: seen.append(item)
        return object.__getattribute__(self, item)


def build(*sets, **kw):
    return build_run(load_recipe("digits_mlp", ["data.subset=300", *sets]), None, console=False, **kw)


def test_event_order_and_counts():
    rec = Recorder()
    run = build("trainer.max_epochs=2", "trainer.early_stopping=null", extra_callbacks=[rec])
    run.trainer.fit()
    steps = run.trainer.steps_per_epoch * 2
    assert rec.seen[0] == "on_fit_start" and rec.seen[-1] == "on_fit_end"
    assert rec.seen.count("on_step_end") == rec.seen.count("on_before_optimizer_step") == steps
    assert rec.seen.count("on_epoch_end") == 2 and rec.seen.count("on_eval_end") == 2
    first_step = rec.seen.index("on_step_start")
    assert rec.seen[first_step : first_step + 3] == ["on_step_start", "on_before_optimizer_step", "on_step_end"]


def test_max_steps_budget_and_schedule_from_explicit_step():
    run = build("trainer.max_steps=7", "schedule={name: cosine}")
    run.trainer.fit()
    assert run.trainer.state.step == 7
    lr0 = run.trainer.optimizer.param_groups[0]["initial_lr"]
    expected = lr0 * 0.5 * (1 + math.cos(math.pi * 6 / 7))  # applied before the 7th step (step index 6)
    assert run.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_early_stopping_restores_best_weights():
    run = build("trainer.max_epochs=60", "trainer.early_stopping={monitor: val_loss, patience: 2, min_delta: 0.5}")
    es = next(cb for cb in run.trainer.callbacks if isinstance(cb, EarlyStopping))
    run.trainer.fit()
    assert run.trainer.state.stop_reason.startswith("early stopping")
    assert run.trainer.state.epoch < 60
    for k, v in run.trainer.unwrapped_model.state_dict().items():
        assert torch.equal(v.cpu(), es.best_weights[k]), k


def test_nonfinite_losses_stop_with_clear_message(tmp_path, capsys):
    code = main(["train", "--set", "optimizer.name=sgd", "--set", "optimizer.lr=1e12", "--set", "trainer.clip_norm=null",
                 "--set", "trainer.max_nonfinite_steps=3", "--run-dir", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "NaN/inf for 3 steps in a row" in err and err.count("\n") == 1


def test_nonfinite_step_is_skipped_and_counted():
    class PoisonOnce(Callback):
        name = "poison"

        def on_step_start(self, trainer, batches):
            if trainer.state.step == 2:
                x, _ = batches[0]
                x[0, 0] = float("nan")

    run = build("trainer.max_steps=5", extra_callbacks=[PoisonOnce()])
    run.trainer.fit()
    assert run.trainer.state.nonfinite_total == 1 and run.trainer.state.step == 5
    assert all(torch.isfinite(p).all() for p in run.trainer.unwrapped_model.parameters())
