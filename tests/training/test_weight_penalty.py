"""`weight_penalty` (L1, L2, elastic net): one step equals autograd on data loss + the penalty written
out, over several steps and random strengths; biases are not penalized; reachable from a recipe."""

import random

import pytest
import torch

from steepest.data import DeviceLoader
from steepest.training.callbacks.penalty import WeightPenalty
from steepest.training.trainer import Trainer, TrainerOptions


@pytest.mark.parametrize("seed", range(4))
def test_penalty_steps_equal_autograd_on_the_penalized_loss(seed):
    rng = random.Random(seed)
    l1, l2 = rng.choice([0.0, 10 ** rng.uniform(-4, -1)]), 10 ** rng.uniform(-4, -1)
    torch.manual_seed(seed)
    x, y = torch.randn(64, 5, dtype=torch.float64), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    reference = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, DeviceLoader(x, y, 32, shuffle=False),
                      options=TrainerOptions(max_steps=6, accumulate=2), callbacks=[WeightPenalty(l1, l2)])
    trainer.fit()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(6):  # accumulate=2 over 2 micro-batches of 32: each step is the full batch
        weights = [reference[0].weight, reference[2].weight]  # the penalty skips biases
        loss = torch.nn.functional.cross_entropy(reference(x), y)
        loss = loss + l1 * sum(w.abs().sum() for w in weights) + l2 * 0.5 * sum(w.square().sum() for w in weights)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert (a - b).abs().max() < 1e-10


def test_recipe_key_and_bad_strengths(tmp_path):
    from steepest.api import train
    from steepest.errors import ConfigError

    summary = train("digits_mlp", ["trainer.max_epochs=2", "callbacks=[{name: weight_penalty, l1: 1.0e-4, l2: 1.0e-3}]"],
                    tmp_path / "run", console=False)
    assert summary["steps"] > 0
    with pytest.raises(ConfigError, match="weight_penalty"):
        WeightPenalty(l1=-1.0)
