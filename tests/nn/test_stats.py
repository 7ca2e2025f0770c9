import pytest
import torch
from torch import nn

from steepest.nn import activation_stats, deep_mlp, init_experiment


def test_rows_are_every_layers_output_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(32, 4)
    rows = activation_stats(model, x)
    assert [(r.name, r.type) for r in rows] == [("0", "Linear"), ("1", "BatchNorm1d"), ("2", "ReLU"), ("3", "Linear")]
    with torch.no_grad():
        h = model[0](x)
    assert rows[0].mean == pytest.approx(float(h.mean()), abs=1e-6) and rows[0].std == pytest.approx(float(h.std()), rel=1e-5)
    assert model.training  # the mode is restored
    running = model[1].running_mean.clone()
    train_rows = activation_stats(model, x, training=True)
    assert train_rows[1].std == pytest.approx(1.0, abs=0.05)  # batch statistics: BatchNorm normalizes
    assert torch.equal(model[1].running_mean, running)  # ... without updating its running statistics


def test_the_references_initialization_experiment():
    """Deep tanh/ReLU nets (10 layers): zeros -> all-zero activations (symmetry), a tiny-std normal
    init -> vanishing activations, Xavier keeps tanh nets' activations alive, Kaiming ReLU nets'."""
    tanh = init_experiment("tanh", ["zeros", ("normal", {"std": 0.01}), ("xavier_normal", {"nonlinearity": "tanh"})],
                           depth=10, width=128, batch=256)
    zeros, small, xavier = tanh.values()
    assert len(xavier) == 10 and max(zeros) == 0
    assert small[-1] < 1e-6  # collapsed
    assert all(0.4 < s < 1.0 for s in xavier) and xavier[-1] / xavier[0] > 0.7
    relu = init_experiment("relu", ["xavier_normal", "kaiming_normal"], depth=10, width=128, batch=256)
    assert all(0.4 < s < 2.0 for s in relu["kaiming_normal"])
    assert relu["xavier_normal"][-1] < 0.1 * relu["kaiming_normal"][-1]  # Xavier's variance halves per ReLU layer
    assert len(activation_stats(deep_mlp("relu", depth=3, width=8), torch.randn(4, 8))) == 6
