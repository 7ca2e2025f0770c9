import math

import pytest
import torch
from torch import nn

from steepest.errors import ConfigError
from steepest.nn import INITS, expected_std, fans, initialize

CASES = [
    ("xavier_uniform", {}),
    ("xavier_normal", {}),
    ("xavier_normal", {"nonlinearity": "tanh"}),
    ("xavier_uniform", {"gain": 2.0}),
    ("kaiming_uniform", {}),
    ("kaiming_normal", {}),
    ("kaiming_normal", {"mode": "fan_out"}),
    ("kaiming_normal", {"nonlinearity": "leaky_relu", "a": 0.2}),
    ("truncated_normal", {"std": 0.05}),
    ("he_truncated_normal", {}),
    ("he_truncated_normal", {"mode": "fan_out"}),
    ("normal", {"std": 0.01}),
    ("orthogonal", {"gain": 1.5}),
    ("default", {}),
]


@pytest.mark.parametrize("scheme,kw", CASES)
def test_weight_std_matches_the_formula(scheme, kw):
    torch.manual_seed(0)
    for layer in (nn.Linear(600, 200), nn.Conv2d(32, 96, 3)):
        fan_in, fan_out = fans(layer.weight)
        initialize(layer, scheme, **kw)
        expected = expected_std(scheme, fan_in, fan_out, receptive_field=layer.weight[0, 0].numel(), **kw)
        assert float(layer.weight.detach().std()) == pytest.approx(expected, rel=0.03)


def test_the_formulas_themselves():
    assert expected_std("xavier_normal", 600, 200) == pytest.approx(math.sqrt(2 / 800))
    assert expected_std("kaiming_normal", 600, 200) == pytest.approx(math.sqrt(2 / 600))
    assert expected_std("kaiming_uniform", 600, 200, mode="fan_out") == pytest.approx(math.sqrt(2 / 200))
    assert expected_std("xavier_normal", 600, 200, nonlinearity="tanh") == pytest.approx(5 / 3 * math.sqrt(2 / 800))
    assert fans(nn.Conv2d(32, 96, 3).weight) == (32 * 9, 96 * 9)
    assert expected_std("orthogonal", 32 * 9, 96 * 9, receptive_field=9) == pytest.approx(1 / math.sqrt(32 * 9))


def test_uniform_bounds_and_truncation():
    layer = nn.Linear(300, 100)
    initialize(layer, "xavier_uniform")
    bound = math.sqrt(6 / 400)  # Glorot & Bengio's limit sqrt(6 / (fan_in + fan_out))
    assert float(layer.weight.detach().abs().max()) <= bound and float(layer.weight.detach().abs().max()) > 0.98 * bound
    initialize(layer, "truncated_normal", std=0.02)
    assert float(layer.weight.detach().abs().max()) <= 0.04


def test_biases_zeroed_except_for_default():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 2, 3), nn.ConvTranspose2d(2, 2, 3))
    initialize(model, "kaiming_normal")
    assert all(torch.all(m.bias == 0) for m in model)
    model2 = nn.Linear(4, 4)
    bias = model2.bias.detach().clone()
    initialize(model2, "default")
    assert torch.equal(model2.bias, bias) and not torch.all(bias == 0)
    initialize(model2, "xavier_normal", zero_bias=False)
    assert torch.equal(model2.bias, bias)


@pytest.mark.parametrize("shape", [(16, 16), (8, 32), (32, 8)])
def test_orthogonal(shape):
    layer = nn.Linear(shape[1], shape[0])
    initialize(layer, "orthogonal")
    w = layer.weight.detach()
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    assert torch.allclose(gram, torch.eye(min(shape)), atol=1e-5)


def test_zeros_keep_hidden_units_identical_after_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1))
    initialize(model, "zeros")
    with torch.no_grad():  # even random weights elsewhere cannot break the symmetry of the zero layer's units
        model[0].bias.fill_(0.3)
        model[2].weight.fill_(0.2)
        model[4].weight.normal_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    w1, w2 = model[0].weight, model[2].weight
    assert torch.allclose(w1, w1[0:1].expand_as(w1))  # every first-layer unit is still the same unit
    assert float(w1.detach().abs().max()) > 0  # ... although it did learn
    assert torch.allclose(w2, w2[:, 0:1].expand_as(w2))
    initialize(model, "xavier_normal")
    assert not torch.allclose(model[0].weight, model[0].weight[0:1].expand_as(model[0].weight))


def test_scheme_names_and_arguments_are_checked():
    assert INITS.names() == ["default", "he_truncated_normal", "kaiming_normal", "kaiming_uniform", "normal", "orthogonal", "truncated_normal",
                             "xavier_normal", "xavier_uniform", "zeros"]
    assert all(INITS.get(n).summary for n in INITS)
    with pytest.raises(ConfigError, match="model.init: unknown init 'xavier'"):
        initialize(nn.Linear(2, 2), "xavier")
    with pytest.raises(ConfigError, match="no argument 'mdoe'.*mode"):
        initialize(nn.Linear(2, 2), "kaiming_normal", mdoe="fan_out")


def test_he_truncated_normal_is_cut_at_two_of_its_own_stds():
    torch.manual_seed(0)
    layer = nn.Linear(800, 400)
    initialize(layer, "he_truncated_normal")
    s = (2 / 800) ** 0.5 / 0.8796256610342398  # the std before the cut
    assert float(layer.weight.abs().max()) <= 2 * s + 1e-7
    assert float(layer.weight.abs().max()) > 1.9 * s  # the tails are cut, not absent


def test_relu_bias_by_name_in_a_recipe():
    from steepest.config import load_recipe
    from steepest.config.build import build_model_from_recipe
    from steepest.errors import ConfigError

    recipe = load_recipe("digits_mlp", ["model.init={scheme: he_truncated_normal, relu_bias: 0.01}", "model.dropout=0.0"])
    model = build_model_from_recipe(recipe, (64,), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias.detach().eq(torch.tensor(0.01)).all() for m in linears[:-1])  # the layers feeding a ReLU
    assert float(linears[-1].bias.abs().max()) == 0.0  # the output layer: zeroed by the init, not a ReLU's input
    with pytest.raises(ConfigError, match="relu_bias"):
        build_model_from_recipe(load_recipe("digits_mlp", ["model.init={scheme: kaiming_normal, relu_bias: -1}"]), (64,), 10)
