"""`gradient_health` warns at the step a layer's gradient vanishes, explodes or turns non-finite, or
its activations saturate or die, and stays silent on a healthy run."""

import warnings

import pytest
import torch
from torch import nn

from steepest.data import DeviceLoader
from steepest.training.callbacks.health import GradientHealth
from steepest.training.trainer import Trainer, TrainerOptions


def run(model, x, y, loss=nn.functional.cross_entropy, lr=0.01, steps=3):
    health = GradientHealth(every_n_steps=1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=lr), loss, DeviceLoader(x, y, 32, shuffle=False),
                      options=TrainerOptions(max_steps=steps), callbacks=[health])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    return health, [str(w.message) for w in caught]


def data(n=64, d=8, k=3, scale=1.0):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g) * scale, torch.randint(0, k, (n,), generator=g)


def test_vanishing_gradients_through_a_deep_sigmoid_net():
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(nn.Linear(8, 16), *layers, nn.Linear(16, 3))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
    health, messages = run(model, *data())
    assert any(f["kind"] == "vanishing" and f["layer"] == "0" and f["step"] == 0 for f in health.findings)
    assert any("step 0: layer 0: vanishing" in m for m in messages)


def test_exploding_gradient_and_its_fix_in_the_message():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    nn.init.normal_(model.weight, std=1e-4)
    x, _ = data()
    health, messages = run(model, x, torch.full((64, 1), 1e3), loss=nn.functional.mse_loss, lr=1e-9)
    assert {f["kind"] for f in health.findings} == {"exploding"}
    assert any("clip" in m for m in messages)


@pytest.mark.parametrize("activation,kind", [(nn.Tanh, "saturated"), (nn.ReLU, "dead")])
def test_saturated_and_dead_activations(activation, kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), activation(), nn.Linear(32, 3))
    if kind == "dead":
        nn.init.constant_(model[0].bias, -100.0)
    x, y = data(scale=100.0 if kind == "saturated" else 1.0)
    health, messages = run(model, x, y)
    assert any(f["kind"] == kind and f["layer"] == "1" for f in health.findings)
    assert sum(kind in m for m in messages) == 1  # once per layer and kind, not every step


def test_silent_on_a_healthy_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    health, messages = run(model, *data(), steps=6)
    assert health.findings == [] and not [m for m in messages if "layer" in m]


def test_from_a_recipe_the_counts_reach_the_metrics(tmp_path):
    from steepest.api import train
    from steepest.track import read_series

    train("digits_mlp", ["trainer.max_epochs=1", "callbacks=[{name: gradient_health, every_n_steps: 5}]"], tmp_path / "run", console=False)
    series = read_series(tmp_path / "run" / "metrics.db", "health/vanishing")
    assert series and all(v == 0.0 for _, v in series)  # measured every 5 steps, healthy
