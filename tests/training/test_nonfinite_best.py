"""A non-finite monitored value is never "best": early stopping, the best checkpoint and the
plateau scheduler skip it (issue "Faults found by users and testers", item 2)."""

import math

import pytest
import torch

from steepest.data import DataInfo, DeviceLoader, Split
from steepest.schedules import ReduceOnPlateau
from steepest.training.callbacks import Checkpoint, EarlyStopping, Evaluate
from steepest.training.checkpoint import load_state
from steepest.training.trainer import Trainer, TrainerOptions

VALIDATION = [math.nan, 1.0, 0.8, 0.6, 0.4]


class ScriptedValidationLoss:
    """Cross entropy in training; in evaluation (no grad), the next scripted value."""

    def __init__(self, values):
        self.values, self.evals = list(values), 0

    def __call__(self, logits, y):
        if torch.is_grad_enabled():
            return torch.nn.functional.cross_entropy(logits, y)
        value = self.values[min(self.evals, len(self.values) - 1)]
        self.evals += 1
        return torch.full((), value)


def test_nan_is_never_the_best_value(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    model = torch.nn.Linear(4, 2)
    stopping = EarlyStopping(monitor="val_loss", patience=3)
    best = Checkpoint(tmp_path, every_n_steps=None, every_n_epochs=None, monitor="val_loss")
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), ScriptedValidationLoss(VALIDATION),
                      DeviceLoader(x, y, 16), options=TrainerOptions(max_steps=len(VALIDATION)), eval_data={"val": Split(x[:8], y[:8])},
                      info=DataInfo("toy", "classification", (4,), 2, 2), callbacks=[Evaluate(None, 1), stopping, best])
    trainer.fit()
    assert trainer.state.step == len(VALIDATION)  # the loss kept falling after the NaN: no early stop
    assert not trainer.state.stop_reason.startswith("early stopping")
    assert stopping.best == pytest.approx(0.4) and stopping.best_step == 5
    saved = load_state(tmp_path / "best.safetensors")
    assert saved["step"] == 5 and saved["metric"]["val_loss"] == pytest.approx(0.4)


@pytest.mark.parametrize("bad", [math.nan, -math.inf, math.inf])
def test_plateau_never_takes_a_non_finite_best(bad):
    p = ReduceOnPlateau(factor=0.5, patience=1)
    p.step(1.0)
    p.step(bad)
    assert p.best == 1.0
    p.step(0.5)
    assert p.best == 0.5 and p.multiplier == 1.0
