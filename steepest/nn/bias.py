"""Bias-initialization rules (biases start at zero, except):

- binary classifier on imbalanced data: the output bias is log(#pos / #neg) [Karpathy 2019], so the
  first predictions already equal the base rate p = sigmoid(b) and the first steps are not spent
  learning it; for a softmax output the same idea is b_k = log(prior_k) (softmax(b) = the priors);
- regression: the output bias is the target mean (or standardize the targets and keep 0);
- LSTM: forget-gate bias 1, so units remember early in training [Gers et al. 1999; Jozefowicz et
  al. 2015], input and output gates -1, pushing the initial cell activations toward 0 [Hochreiter &
  Schmidhuber 1997];
- ReLU layers: optionally a small positive bias (0.01) so fewer units start dead [Steinwart 2019];
  the benefit is not well established.

    >>> head = nn.Linear(16, 1)
    >>> b = init_output_bias(head, torch.tensor([1.0] + [0.0] * 9), "binary")
    >>> round(float(b.detach()), 4)  # log(1 / 9)
    -2.1972
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from steepest.errors import unknown_choice

WEIGHTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)
TASKS = ("binary", "classification", "multiclass", "multilabel", "regression")


def output_layer(model: nn.Module) -> nn.Module:
    """The last Linear/Conv module of `model` in registration order (or `model` itself)."""
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    if not layers:
        raise ValueError("the model has no Linear/Conv output layer")
    return layers[-1]


def _log_odds(pos: Tensor, total: int) -> Tensor:
    pos = pos.clamp(1, total - 1)  # a class with no examples counts as having one
    return torch.log(pos / (total - pos))


@torch.no_grad()
def init_output_bias(model: nn.Module, targets: Tensor, task: str) -> Tensor:
    """Set the output layer's bias (the last Linear/Conv of `model`, or `model` itself) from the
    training targets and return it:

    regression      b = mean(y) per output                          (targets (N,) or (N, D))
    binary          b = log(#pos / #neg) for one logit; log priors for two
    multilabel      b_j = log(#pos_j / #neg_j) per label            (targets (N, D) of 0/1)
    classification  b_k = log(#k / N) (alias: multiclass)           (targets (N,) class indices)

    Counts of zero are treated as one, so every bias is finite.
    """
    if task not in TASKS:
        raise unknown_choice("task", task, TASKS)
    layer = output_layer(model)
    if layer.bias is None:
        raise ValueError(f"the output layer {type(layer).__name__} has no bias")
    k = layer.bias.numel()
    y = targets.detach().reshape(len(targets), -1).to(torch.float64)
    n = len(y)
    if n == 0:
        raise ValueError("no targets to initialize the output bias from")
    if task == "regression":
        value = y.mean(0)
    elif task in ("binary", "multilabel") and (k == y.shape[1] or task == "multilabel"):
        value = _log_odds(y.sum(0), n)
    else:  # class indices -> log priors (also a two-logit binary head)
        labels = targets.detach().reshape(-1).long()
        counts = torch.bincount(labels[labels >= 0], minlength=k).to(torch.float64)
        if len(counts) > k:
            raise ValueError(f"targets hold class {len(counts) - 1} but the output layer has {k} outputs")
        value = torch.log(counts.clamp_min(1) / counts.sum())
    if value.numel() not in (1, k):
        raise ValueError(f"{value.numel()} target columns for an output layer with {k} outputs")
    layer.bias.copy_(value.to(layer.bias.dtype).expand_as(layer.bias))
    return layer.bias


@torch.no_grad()
def init_lstm_biases(lstm: nn.LSTM | nn.LSTMCell, forget: float = 1.0, input: float = -1.0, output: float = -1.0,
                     cell: float = 0.0) -> nn.Module:
    """Set the LSTM gate biases, every layer and direction. PyTorch stacks the gates as
    (i, f, g, o), each `hidden_size` rows, and adds two biases, b_ih + b_hh. The rule's value goes
    into bias_ih and bias_hh is zeroed, so the effective bias b_ih + b_hh is exactly

        [0:h] input = -1,   [h:2h] forget = 1,   [2h:3h] cell candidate g = 0,   [3h:4h] output = -1

    Returns the module.

    >>> lstm = init_lstm_biases(nn.LSTM(3, 2))
    >>> (lstm.bias_ih_l0 + lstm.bias_hh_l0).tolist()
    [-1.0, -1.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0]
    """
    h = lstm.hidden_size
    found = False
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p[0:h], p[h : 2 * h], p[2 * h : 3 * h], p[3 * h : 4 * h] = input, forget, cell, output
            found = True
        elif name.startswith("bias_hh"):
            p.zero_()
    if not found:
        raise ValueError("the LSTM has no biases (bias=False)")
    return lstm


RELUS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
_PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity)


@torch.no_grad()
def relu_bias(model: nn.Module, value: float = 0.01, layers: Iterable[nn.Module] | None = None) -> int:
    """Set the bias of every Linear/Conv layer that feeds a ReLU to `value` and return how many.

    "Feeds a ReLU": the next leaf module in registration order (skipping Dropout/Identity) is a
    nn.ReLU/ReLU6 -- the pattern of Sequential models. A layer followed by a normalization layer
    is skipped (the norm subtracts the bias again). Models that call F.relu in forward have no
    such modules: pass their `layers` explicitly.

    >>> relu_bias(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    1
    """
    if layers is None:
        leaves = [m for m in model.modules() if not list(m.children())]
        chosen = []
        for i, m in enumerate(leaves):
            if not isinstance(m, WEIGHTED) or m.bias is None:
                continue
            nxt = next((n for n in leaves[i + 1 :] if not isinstance(n, _PASS_THROUGH)), None)
            if isinstance(nxt, RELUS):
                chosen.append(m)
    else:
        chosen = [m for m in layers if getattr(m, "bias", None) is not None]
    for m in chosen:
        m.bias.fill_(value)
    return len(chosen)
