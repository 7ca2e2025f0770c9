import pytest
import torch
from torch import nn

from steepest.regularize import DropConnectLinear, insert_dropout, set_dropout


def test_insert_dropout_after_hidden_activations_only():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 2), nn.Tanh())
    keys, x = list(model.state_dict()), torch.randn(5, 4)
    before = model.eval()(x)
    assert insert_dropout(model, 0.2) is model
    assert isinstance(model[1], nn.Sequential) and [type(m) for m in model[1]] == [nn.ReLU, nn.Dropout]
    assert model[1][1].p == 0.2
    assert type(model[3]) is nn.GELU  # already followed by a dropout layer
    assert type(model[6]) is nn.Tanh  # the output activation
    assert list(model.state_dict()) == keys and torch.equal(model(x), before)
    assert not torch.equal(model.train()(x), before)


def test_insert_dropout_in_a_nested_module():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(3, 3), nn.SiLU(), nn.Linear(3, 1)

        def forward(self, x):
            return self.out(self.act(self.fc(x)))

    block = insert_dropout(Block(), 0.5)
    assert [type(m) for m in block.act] == [nn.SiLU, nn.Dropout]


def test_set_dropout_changes_every_rate():
    model = nn.ModuleDict({
        "mlp": nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Dropout2d(0.1)),
        "attn": nn.MultiheadAttention(8, 2, dropout=0.1),
        "rnn": nn.LSTM(3, 4, num_layers=2, dropout=0.1),
        "dc": DropConnectLinear(2, 2, p=0.1),
    })
    assert set_dropout(model, 0.3) == 4
    assert model["mlp"][1].p == model["mlp"][2].p == model["attn"].dropout == model["rnn"].dropout == 0.3
    assert model["dc"].p == 0.1
    assert set_dropout(model, 0.2, dropconnect=True) == 5 and model["dc"].p == 0.2
    with pytest.raises(ValueError):
        set_dropout(model, 1.5)
