"""Which parameters train: freezing by name, layer groups, gradual unfreezing and discriminative
learning rates (Howard & Ruder 2018, "Universal Language Model Fine-tuning", ULMFiT).

Layer groups are the model's weight layers in order (each Linear, Conv, Embedding, RNN, attention
block... with the normalization layers and other small parameters that follow it), so the last
group is the head. Feature extraction trains the head only; fine-tuning trains more groups;
gradual unfreezing starts with the head and thaws one more group every few epochs, from the top;
discriminative learning rates give group i the lr x decay^(n - 1 - i): the head the full lr, each
earlier group `decay` times less (ULMFiT: 1 / 2.6).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    >>> [[n for n in g] for g in layer_groups(model)]
    [['0.weight', '0.bias', '1.weight', '1.bias'], ['2.weight', '2.bias']]
    >>> frozen = freeze(model, "all_but_head"); trainable_names(model)
    ['2.weight', '2.bias']
    >>> discriminative_lr_scales(model, decay=0.5)
    {'0.weight': 0.5, '0.bias': 0.5, '1.weight': 0.5, '1.bias': 0.5, '2.weight': 1.0, '2.bias': 1.0}
"""

from __future__ import annotations

import fnmatch

from torch import nn

from steepest.errors import ConfigError
from steepest.optim.param_groups import NORM_TYPES
from steepest.training.events import Callback


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped by weight layer, in the order the model registers them."""
    groups: list[list[str]] = []
    for module_name, module in model.named_modules():
        own = [f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(module, NORM_TYPES) and groups:  # a norm belongs with the layer before it
            groups[-1].extend(own)
        else:
            groups.append(own)
    return groups


def _selected(name: str, patterns: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


def freeze(model: nn.Module, what: str | list[str] = "all_but_head") -> list[str]:
    """Freeze parameters: "all" , "all_but_head" (feature extraction: only the last layer group
    trains), or a list of module-name prefixes / fnmatch patterns ("0", "stages.0.*"). Returns the
    frozen names; raises ValueError when a pattern matches nothing."""
    names = [n for n, _ in model.named_parameters()]
    if what == "all":
        chosen = names
    elif what == "all_but_head":
        head = set(layer_groups(model)[-1])
        chosen = [n for n in names if n not in head]
    else:
        patterns = [what] if isinstance(what, str) else list(what)
        for p in patterns:
            if not any(_selected(n, [p]) for n in names):
                raise ValueError(f"freeze pattern {p!r} matches no parameter; parameters start with: "
                                 f"{sorted({n.split('.')[0] for n in names})[:12]}")
        chosen = [n for n in names if _selected(n, patterns)]
    params = dict(model.named_parameters())
    for n in chosen:
        params[n].requires_grad_(False)
    return chosen


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_summary(model: nn.Module) -> str:
    """'trainable 1,234 of 56,789 parameters (2.2%)'."""
    total = sum(p.numel() for p in model.parameters())
    live = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {live:,} of {total:,} parameters ({100 * live / max(total, 1):.1f}%)"


def discriminative_lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """{parameter name: decay^(groups after its own)}: for `param_groups(lr_scale=...)`."""
    if not 0 < decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {decay}")
    groups = layer_groups(model)
    return {name: decay ** (len(groups) - 1 - i) for i, group in enumerate(groups) for name in group}


def thawed_groups(epoch: int, every_n_epochs: int, n_groups: int) -> int:
    """How many groups (from the top) train in `epoch` (0-based): 1, then one more every `every_n_epochs`."""
    return min(n_groups, 1 + epoch // every_n_epochs)


class GradualUnfreezing(Callback):
    """Train the head only, then thaw one more layer group from the top every `every_n_epochs`
    epochs. The frozen set is a function of the epoch, so a resumed run freezes the same groups.
    Parameters frozen for good before training (LoRA, `finetune.freeze`) stay frozen. Build the
    optimizer over every parameter first (frozen ones have no gradient, so no optimizer touches them)."""

    name = "gradual_unfreezing"

    def __init__(self, every_n_epochs: int = 1):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self._groups: list[list[str]] | None = None
        self.history: list[tuple[int, int]] = []  # (epoch, groups training)

    def on_fit_start(self, trainer) -> None:
        if trainer.world_size > 1:
            raise ConfigError("gradual_unfreezing changes which parameters train mid-run, which DDP does not allow; "
                              "train on one process or use finetune.freeze instead")
        model = trainer.unwrapped_model
        live = {n for n, p in model.named_parameters() if p.requires_grad}
        self._groups = [[n for n in g if n in live] for g in layer_groups(model)]
        self._groups = [g for g in self._groups if g]
        self._apply(trainer)

    def on_epoch_start(self, trainer) -> None:
        self._apply(trainer)

    def _apply(self, trainer) -> None:
        if not self._groups:
            return
        thawed = thawed_groups(trainer.state.epoch, self.every_n_epochs, len(self._groups))
        params = dict(trainer.unwrapped_model.named_parameters())
        for i, group in enumerate(self._groups):
            for n in group:
                params[n].requires_grad_(i >= len(self._groups) - thawed)
        if not self.history or self.history[-1] != (trainer.state.epoch, thawed):
            self.history.append((trainer.state.epoch, thawed))
