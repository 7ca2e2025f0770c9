"""Activation statistics: the initialization experiment of Glorot & Bengio 2010 (the std of each
layer's activations in a deep MLP, per initialization scheme).

Push one batch through a model and record the mean and std of every layer's output. With a good
initialization the std stays roughly constant with depth; in a deep tanh net a tiny-std normal init
makes it collapse toward 0 (vanishing), all-zero weights make every unit identical, Xavier (gain
5/3) keeps it stable; in a deep ReLU net Kaiming keeps it stable where Xavier halves it per layer.

    >>> torch.manual_seed(0) is not None
    True
    >>> net = initialize(deep_mlp("tanh", depth=4, width=64), "xavier_normal", nonlinearity="tanh")
    >>> [round(r.std, 1) for r in activation_stats(net, torch.randn(256, 64)) if r.type == "Tanh"][-1] > 0.3
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from steepest.nn.activations import make_activation
from steepest.nn.init import initialize


class ActivationRow(NamedTuple):
    name: str
    type: str
    mean: float
    std: float


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]  # LSTM/GRU: (output, state)
    return None


@torch.no_grad()
def activation_stats(model: nn.Module, batch: Tensor, training: bool = False) -> list[ActivationRow]:
    """(layer name, type, mean, std) of every leaf module's floating-point output on `batch`, in call
    order. The model runs in eval mode unless `training=True` (then BatchNorm normalizes with the
    batch's statistics; its running statistics are restored afterwards, dropout draws from the
    global RNG). The statistics stay on the device until one transfer at the end.

    >>> rows = activation_stats(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(8, 3))
    >>> [(r.name, r.type) for r in rows]
    [('0', 'Linear'), ('1', 'ReLU')]
    """
    names: list[tuple[str, str]] = []
    stats: list[Tensor] = []

    def hook(name: str):
        def record(module: nn.Module, inputs: Any, out: Any) -> None:
            t = _first_tensor(out)
            if t is not None and t.is_floating_point() and t.numel() > 1:
                t = t.detach().float()
                names.append((name, type(module).__name__))
                stats.append(torch.stack([t.mean(), t.std()]))

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if not list(m.children())]
    was_training = model.training
    buffers = {k: b.clone() for k, b in model.named_buffers()} if training else {}
    model.train(training)
    try:
        model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for k, b in model.named_buffers():
            if k in buffers:
                b.copy_(buffers[k])
    values = torch.stack(stats).cpu().tolist() if stats else []
    return [ActivationRow(n, t, m, s) for (n, t), (m, s) in zip(names, values)]


def deep_mlp(activation: str = "tanh", depth: int = 10, width: int = 256) -> nn.Sequential:
    """`depth` blocks of [Linear(width, width), activation]: the test bed of that experiment."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), make_activation(activation)]
    return nn.Sequential(*layers)


def init_experiment(activation: str = "tanh", schemes: Sequence[str | tuple[str, dict]] = (
        "zeros", ("normal", {"std": 0.01}), "xavier_normal", "kaiming_normal"),
        depth: int = 10, width: int = 256, batch: int = 512, seed: int = 0) -> dict[str, list[float]]:
    """The std of each activation layer's output in a deep MLP, per init scheme (Glorot & Bengio's
    experiment): {label: [std after block 1, ..., std after block `depth`]}. A scheme is a name or
    (name, kwargs); labels are 'name' or 'name(k=v)'. Seeded and self-contained (own generator)."""
    out: dict[str, list[float]] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.randn(batch, width)
        for spec in schemes:
            name, kw = (spec, {}) if isinstance(spec, str) else spec
            label = name if not kw else f"{name}({', '.join(f'{k}={v}' for k, v in kw.items())})"
            net = initialize(deep_mlp(activation, depth, width), name, **kw)
            out[label] = [r.std for r in activation_stats(net, x) if r.type != "Linear"]
    return out
