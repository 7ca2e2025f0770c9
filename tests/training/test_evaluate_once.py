"""An epoch that ends on a step already evaluated (eval every n steps) is not evaluated again."""

import torch
from torch import nn

from steepest.data import DeviceLoader, Split
from steepest.optim import create
from steepest.training.callbacks import EarlyStopping, Evaluate
from steepest.training.events import Callback
from steepest.training.trainer import Trainer, TrainerOptions


class EvalSteps(Callback):
    name = "eval_steps"

    def __init__(self):
        self.steps = []

    def on_eval_end(self, trainer, split, metrics):
        self.steps.append(trainer.state.step)


def test_one_evaluation_per_step_and_early_stopping_counts_it_once():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    model = nn.Linear(5, 3)
    seen = EvalSteps()
    # 4 steps an epoch, evaluation every 2 steps and every epoch; patience 1 stops at the first evaluation that does not
    # improve: a second evaluation of the same weights at an epoch's end must not be that one
    stopping = EarlyStopping(monitor="val_loss", patience=1)
    trainer = Trainer(model, create("adamw", model, lr=1e-2), nn.CrossEntropyLoss(), DeviceLoader(x, y, 16, seed=0),
                      options=TrainerOptions(max_steps=8, log_every_n_steps=2), eval_data={"val": Split(x, y)},
                      callbacks=[Evaluate(every_n_epochs=1, every_n_steps=2), seen, stopping])
    state = trainer.fit()
    assert seen.steps == [2, 4, 6, 8]
    assert state.step == 8 and not state.stop_reason.startswith("early stopping")
