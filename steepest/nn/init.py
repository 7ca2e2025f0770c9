"""Weight initialization by name, the references' bias rules, and activation statistics.

Schemes (fan_in/fan_out of a Linear or Conv weight):
  xavier_uniform / xavier_normal   Var(w) = 2 / (fan_in + fan_out)        (Glorot & Bengio 2010; tanh)
  kaiming_uniform / kaiming_normal Var(w) = 2 / fan (mode fan_in|fan_out)   (He et al. 2015; ReLU)
  truncated_normal                 N(0, std) cut at +-2 std
  orthogonal                       W W^T = I (gain)                         (Saxe et al. 2014)
  zeros                            every unit identical: the symmetry that gradient descent cannot break
  default                          PyTorch's own initialization
Biases are set to zero by `initialize`, except where a bias rule says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from steepest.registry import Registry

INITS = Registry("init")
INITS.register("xavier_uniform", lambda w, gain=1.0, **_: nn.init.xavier_uniform_(w, gain=gain))
INITS.register("xavier_normal", lambda w, gain=1.0, **_: nn.init.xavier_normal_(w, gain=gain))
INITS.register("kaiming_uniform", lambda w, mode="fan_in", nonlinearity="relu", **_: nn.init.kaiming_uniform_(w, mode=mode, nonlinearity=nonlinearity))
INITS.register("kaiming_normal", lambda w, mode="fan_in", nonlinearity="relu", **_: nn.init.kaiming_normal_(w, mode=mode, nonlinearity=nonlinearity))
INITS.register("truncated_normal", lambda w, std=0.02, **_: nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std))
INITS.register("orthogonal", lambda w, gain=1.0, **_: nn.init.orthogonal_(w, gain=gain))
INITS.register("zeros", lambda w, **_: nn.init.zeros_(w))
INITS.register("default", lambda w, **_: w)

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def initialize(model: nn.Module, scheme: str = "default", zero_bias: bool = True, **kwargs: Any) -> nn.Module:
    """Apply `scheme` to every Linear/Conv weight (biases to zero unless `zero_bias=False`)."""
    fn: Callable = INITS.get(scheme, "model.init").target
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, WEIGHTED):
            fn(m.weight, **kwargs)
            if zero_bias and m.bias is not None:
                m.bias.zero_()
    return model


def last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the model has no nn.Linear output layer")
    return layers[-1]


@torch.no_grad()
def init_output_bias(model: nn.Module, targets: Tensor, task: str) -> Tensor:
    """The references' output-bias rules, so the first predictions already match the data:
    regression -> the target mean; binary -> log(pos / neg); multiclass -> log(class prior)."""
    layer = last_linear(model)
    if layer.bias is None:
        raise ValueError("the output layer has no bias")
    y = targets.detach().to(torch.float64)
    if task == "regression":
        value = y.reshape(len(y), -1).mean(0)
    elif task in ("binary", "multilabel"):
        pos = y.reshape(len(y), -1).mean(0).clamp(1e-6, 1 - 1e-6)
        value = torch.log(pos / (1 - pos))
    else:
        counts = torch.bincount(targets.long().reshape(-1), minlength=layer.out_features).to(torch.float64)
        value = torch.log((counts / counts.sum()).clamp_min(1e-6))
    layer.bias.copy_(value.to(layer.bias.dtype).expand_as(layer.bias))
    return layer.bias


@torch.no_grad()
def init_lstm_biases(lstm: nn.LSTM | nn.LSTMCell, forget: float = 1.0, input: float = -1.0, output: float = -1.0) -> None:
    """Gate biases of an LSTM (PyTorch gate order i, f, g, o): the forget gate starts open (1, so
    memories are kept early in training) and the input/output gates at -1. The value goes into
    bias_ih and bias_hh is zeroed, so the effective bias (their sum) is exactly the given value."""
    h = lstm.hidden_size
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p.zero_()
            p[0:h] = input
            p[h : 2 * h] = forget
            p[3 * h : 4 * h] = output
        elif name.startswith("bias_hh"):
            p.zero_()


@torch.no_grad()
def relu_bias(model: nn.Module, value: float = 0.01) -> int:
    """A small positive bias for layers followed by ReLU, so units start active (fewer dead ReLUs).
    Applied to every Linear/Conv except the last layer; returns how many were set."""
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED) and m.bias is not None]
    for m in layers[:-1]:
        m.bias.fill_(value)
    return max(len(layers) - 1, 0)


@torch.no_grad()
def activation_stats(model: nn.Module, batch: Tensor) -> list[tuple[str, str, float, float]]:
    """(layer name, type, mean, std) of every leaf module's output on `batch`: the references'
    experiment for comparing schemes (vanishing or exploding activations show up as std -> 0 or grows)."""
    rows: list[tuple[str, str, float, float]] = []
    hooks = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0 and name:
            hooks.append(m.register_forward_hook(lambda mod, inp, out, n=name: rows.append(
                (n, type(mod).__name__, float(out.float().mean()), float(out.float().std())) if isinstance(out, Tensor) else None)))
    was = model.training
    model.eval()
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return [r for r in rows if r is not None]


def expected_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """The weight standard deviation a scheme targets (for checks and the doctor)."""
    return {"xavier_uniform": math.sqrt(2 / (fan_in + fan_out)), "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
            "kaiming_uniform": math.sqrt(2 / fan_in), "kaiming_normal": math.sqrt(2 / fan_in)}[scheme]
