"""Dropout placement and rates (Srivastava et al. 2014).

The usual placement is after the nonlinearity of each hidden layer, never after the output: `insert_dropout`
puts Dropout(p) there in any model, in place, without renaming a single parameter; `set_dropout` changes
every dropout rate of a built model (for a sweep or a schedule).

    >>> net = insert_dropout(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), 0.2)
    >>> net[1]
    Sequential(
      (0): ReLU()
      (1): Dropout(p=0.2, inplace=False)
    )
    >>> set_dropout(net, 0.5)
    1
"""

from __future__ import annotations

from torch import nn

from steepest.regularize.dropconnect import DropConnectConv2d, DropConnectLinear

HIDDEN_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.ELU, nn.Mish)


def _check(p: float) -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"dropout p must be in [0, 1], got {p}")
    return float(p)


def insert_dropout(model: nn.Module, p: float, after: tuple[type[nn.Module], ...] = HIDDEN_ACTIVATIONS) -> nn.Module:
    """Put Dropout(p) after every activation module of a type in `after`, in place: each such
    activation `act` becomes nn.Sequential(act, nn.Dropout(p)). Activations hold no parameters, so
    state_dict keys are unchanged. Skipped: an activation that is the model's last module (the
    output), and one whose next sibling is already a dropout layer. Returns the model.
    A module used twice (self.act called per layer) is wrapped once and drops at every use."""
    _check(p)
    leaves = [m for m in model.modules() if not list(m.children())]
    last = leaves[-1] if leaves else None
    for parent in list(model.modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):
            child = parent._modules[name]
            if type(child) not in after or child is last:
                continue
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            if isinstance(nxt, nn.modules.dropout._DropoutNd):
                continue
            parent._modules[name] = nn.Sequential(child, nn.Dropout(p)).train(child.training)
    return model


def set_dropout(model: nn.Module, p: float, dropconnect: bool = False) -> int:
    """Set every dropout rate in `model` to `p` and return how many were set: Dropout/Dropout1d/2d/3d/
    AlphaDropout modules, nn.MultiheadAttention's attention dropout, and the between-layer dropout of
    nn.RNN/LSTM/GRU with more than one layer; DropConnect layers too when `dropconnect=True`."""
    _check(p)
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = p
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = p
        elif isinstance(m, nn.RNNBase) and m.num_layers > 1:
            m.dropout = p
        elif dropconnect and isinstance(m, DropConnectLinear | DropConnectConv2d):
            if p >= 1:
                raise ValueError("DropConnect p must be < 1")
            m.p = p
        else:
            continue
        count += 1
    return count
