import math

import pytest
import torch
from torch import nn

from steepest.nn import (
    RMSNorm,
    activation_stats,
    init_lstm_biases,
    init_output_bias,
    initialize,
    make_norm,
    relu_bias,
)


def test_rmsnorm_formula_and_torch():
    x = torch.randn(4, 7, dtype=torch.float64)
    norm = RMSNorm(7, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 7))
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected)
    if hasattr(nn, "RMSNorm"):
        ref = nn.RMSNorm(7, eps=1e-6).double()
        ref.weight.data.copy_(norm.weight.data)
        assert torch.allclose(norm(x), ref(x))


def test_norm_names():
    assert isinstance(make_norm("batchnorm", 8, dims=2), nn.BatchNorm2d)
    assert isinstance(make_norm("groupnorm", 12, dims=2), nn.GroupNorm)
    assert isinstance(make_norm("rmsnorm", 8), RMSNorm)
    from steepest.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'layernorm'"):
        make_norm("layernrom", 4)


@pytest.mark.parametrize("scheme,expected", [("xavier_uniform", lambda i, o: math.sqrt(2 / (i + o))),
                                             ("xavier_normal", lambda i, o: math.sqrt(2 / (i + o))),
                                             ("kaiming_normal", lambda i, o: math.sqrt(2 / i)),
                                             ("kaiming_uniform", lambda i, o: math.sqrt(2 / i))])
def test_init_std_matches_formula(scheme, expected):
    torch.manual_seed(0)
    layer = nn.Linear(400, 300)
    initialize(layer, scheme)
    assert float(layer.weight.detach().std()) == pytest.approx(expected(400, 300), rel=0.03)
    assert torch.all(layer.bias == 0)


def test_orthogonal_and_zeros_symmetry():
    layer = nn.Linear(16, 16)
    initialize(layer, "orthogonal")
    assert torch.allclose(layer.weight @ layer.weight.T, torch.eye(16), atol=1e-5)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    initialize(model, "zeros")
    with torch.no_grad():
        model[2].weight.fill_(0.1)  # even a nonzero output layer cannot break the symmetry of the hidden units
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
    w = model[0].weight
    assert torch.allclose(w, w[0:1].expand_as(w))  # every hidden unit is still the same unit


def deep(act, width=256, depth=10):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers)


def test_activation_stats_reproduce_the_references_experiment():
    torch.manual_seed(0)
    x = torch.randn(512, 256)
    tanh_xavier = deep(nn.Tanh)
    initialize(tanh_xavier, "xavier_normal", gain=5 / 3)
    tanh_small = deep(nn.Tanh)
    initialize(tanh_small, "truncated_normal", std=0.01)
    relu_kaiming = deep(nn.ReLU)
    initialize(relu_kaiming, "kaiming_normal")
    last = lambda model: [r for r in activation_stats(model, x) if r[1] in ("Tanh", "ReLU")][-1][3]  # noqa: E731
    assert 0.3 < last(tanh_xavier) < 1.0
    assert last(tanh_small) < 1e-6  # collapsed
    assert 0.3 < last(relu_kaiming) < 3.0
    rows = activation_stats(relu_kaiming, x)
    assert len(rows) == 20 and rows[0][0] == "0"


def test_bias_rules():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    y = torch.tensor([1.0] * 5 + [0.0] * 95)
    init_output_bias(model, y, "binary")
    assert float(model[2].bias.detach()) == pytest.approx(math.log(5 / 95), rel=1e-5)
    init_output_bias(model, torch.tensor([2.0, 4.0, 9.0]), "regression")
    assert float(model[2].bias.detach()) == pytest.approx(5.0)
    multi = nn.Linear(3, 3)
    init_output_bias(multi, torch.tensor([0, 0, 1, 2]), "classification")
    assert torch.allclose(multi.bias, torch.log(torch.tensor([0.5, 0.25, 0.25])))
    assert relu_bias(model, 0.01) == 1 and torch.all(model[0].bias == 0.01)
    lstm = nn.LSTM(3, 4, num_layers=2)
    init_lstm_biases(lstm)
    for layer in range(2):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.all(total[0:4] == -1) and torch.all(total[4:8] == 1) and torch.all(total[8:12] == 0) and torch.all(total[12:16] == -1)


def test_recipe_init_and_output_bias(tmp_path):
    from steepest.config import load_recipe
    from steepest.train.run import build_run

    run = build_run(load_recipe("digits_mlp", ["model.init={scheme: orthogonal, gain: 1.0}", "model.output_bias=auto"]), None, console=False)
    first = run.trainer.unwrapped_model[0].weight.detach()  # 128 x 64: orthonormal columns
    assert torch.allclose(first.T @ first, torch.eye(first.shape[1]), atol=1e-4)
    counts = torch.bincount(run.data.train.y, minlength=10).double()
    assert torch.allclose(run.trainer.unwrapped_model[-1].bias.double(), torch.log(counts / counts.sum()), atol=1e-5)
