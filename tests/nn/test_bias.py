import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steepest.errors import ConfigError
from steepest.nn import init_lstm_biases, init_output_bias, relu_bias


def test_binary_output_bias_is_log_pos_over_neg_and_gives_the_base_rate_loss():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    y = torch.tensor([1.0] * 5 + [0.0] * 95)
    b = init_output_bias(model, y, "binary")
    assert b is model[2].bias and float(b.detach()) == pytest.approx(math.log(5 / 95), rel=1e-6)
    p = 0.05  # with zero weights the first loss is the entropy of the base rate, the best constant guess
    loss = F.binary_cross_entropy_with_logits(b.detach().expand(100), y)
    assert float(loss) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-5)
    two = nn.Linear(3, 2)  # a two-logit softmax head gets the log priors
    init_output_bias(two, y.long(), "binary")
    assert torch.allclose(two.bias.softmax(0), torch.tensor([0.95, 0.05]))


def test_multiclass_regression_and_multilabel_biases():
    multi = nn.Linear(3, 3)
    init_output_bias(multi, torch.tensor([0, 0, 1, 2]), "classification")
    assert torch.allclose(multi.bias, torch.log(torch.tensor([0.5, 0.25, 0.25])))
    init_output_bias(multi, torch.tensor([0, 0, 1, 1]), "multiclass")  # class 2 is absent: finite all the same
    assert torch.isfinite(multi.bias).all() and float(multi.bias[2].detach()) < float(multi.bias[0].detach())
    reg = nn.Linear(3, 2)
    init_output_bias(reg, torch.tensor([[2.0, -1.0], [4.0, -3.0], [9.0, -5.0]]), "regression")
    assert torch.allclose(reg.bias, torch.tensor([5.0, -3.0]))
    one = nn.Linear(3, 1)
    init_output_bias(one, torch.tensor([2.0, 4.0, 9.0]), "regression")
    assert float(one.bias.detach()) == pytest.approx(5.0)
    labels = nn.Linear(3, 2)
    init_output_bias(labels, torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), "multilabel")
    assert torch.allclose(labels.bias, torch.tensor([0.0, math.log(1 / 3)]), atol=1e-6)
    with pytest.raises(ConfigError, match="did you mean 'regression'"):
        init_output_bias(reg, torch.zeros(3), "regresion")
    with pytest.raises(ValueError, match="2 outputs"):
        init_output_bias(nn.Linear(2, 2), torch.tensor([0, 3]), "classification")


def test_lstm_gate_biases_at_the_documented_slices():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    assert init_lstm_biases(lstm) is lstm
    for name in ("l0", "l1", "l0_reverse", "l1_reverse"):
        ih, hh = getattr(lstm, f"bias_ih_{name}"), getattr(lstm, f"bias_hh_{name}")
        assert torch.all(hh == 0)  # the whole value sits in bias_ih
        assert ih.tolist() == [-1.0] * 4 + [1.0] * 4 + [0.0] * 4 + [-1.0] * 4  # i, f, g, o
    cell = init_lstm_biases(nn.LSTMCell(3, 2), forget=2.0)
    assert (cell.bias_ih + cell.bias_hh).tolist() == [-1, -1, 2, 2, 0, 0, -1, -1]
    with pytest.raises(ValueError, match="no biases"):
        init_lstm_biases(nn.LSTM(3, 2, bias=False))


def test_lstm_gate_biases_act_on_the_gates_pytorch_computes():
    """With zero weights every gate is its bias: c1 = sigmoid(i) tanh(g), c2 = sigmoid(f) c1 + c1,
    h = sigmoid(o) tanh(c). Distinct values per gate catch a wrong slice order."""
    lstm = nn.LSTM(1, 1)
    with torch.no_grad():
        lstm.weight_ih_l0.zero_()
        lstm.weight_hh_l0.zero_()
    init_lstm_biases(lstm, forget=1.0, input=-1.0, output=-0.5, cell=0.5)
    s, t = torch.sigmoid, torch.tanh
    i, f, g, o = s(torch.tensor(-1.0)), s(torch.tensor(1.0)), t(torch.tensor(0.5)), s(torch.tensor(-0.5))
    c1 = i * g
    c2 = f * c1 + i * g
    with torch.no_grad():
        out, (h, c) = lstm(torch.zeros(2, 1, 1))
    assert float(c) == pytest.approx(float(c2), rel=1e-6)
    assert float(h) == pytest.approx(float(o * t(c2)), rel=1e-6)


def test_relu_bias_only_on_layers_feeding_a_relu():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.ReLU(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    assert relu_bias(model, 0.01) == 1
    assert torch.all(model[0].bias == 0.01)
    assert not torch.any(model[3].bias == 0.01) and not torch.any(model[6].bias == 0.01) and not torch.any(model[8].bias == 0.01)
    assert relu_bias(model, 0.1, layers=[model[3]]) == 1 and torch.all(model[3].bias == 0.1)


def test_recipe_init_and_output_bias():
    from steepest.config import load_recipe
    from steepest.run import build_run

    run = build_run(load_recipe("digits_mlp", ["model.init={scheme: orthogonal, gain: 1.0}", "model.output_bias=auto"]), None, console=False)
    first = run.trainer.unwrapped_model[0].weight.detach()  # 128 x 64: orthonormal columns
    assert torch.allclose(first.T @ first, torch.eye(first.shape[1]), atol=1e-4)
    counts = torch.bincount(run.data.train.y, minlength=10).double()
    assert torch.allclose(run.trainer.unwrapped_model[-1].bias.double(), torch.log(counts / counts.sum()), atol=1e-5)
