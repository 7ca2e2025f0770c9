"""The recipe's `finetune:` section applied to a freshly built model, before the optimizer exists:
pretrained weights, then LoRA adapters, then freezing. Gradual unfreezing and discriminative
learning rates are wired by the run (a callback and the optimizer's lr scales)."""

from __future__ import annotations

from typing import Any

from torch import nn

from steepest.errors import ConfigError
from steepest.finetune.freeze import (
    discriminative_lr_scales,
    freeze,
    layer_groups,
    trainable_summary,
)
from steepest.finetune.lora import apply_lora
from steepest.finetune.pretrained import load_pretrained


def prepare_model(model: nn.Module, section) -> list[str]:
    """Apply `section` (a FinetuneConfig) to `model` in place; returns one line per action taken."""
    notes: list[str] = []
    if section.pretrained:
        notes.append(load_pretrained(model, section.pretrained, skip=section.skip).summary())
    if section.lora is not None:
        lora = section.lora
        train = list(lora.train)
        if lora.train_head:
            head = layer_groups(model)[-1]
            train += sorted({name.rsplit(".", 1)[0] for name in head})
        try:
            adapted = apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, targets=lora.targets,
                                 exclude=lora.exclude, train=train)
        except ValueError as exc:
            raise ConfigError(f"finetune.lora: {exc}") from None
        notes.append(f"LoRA r={lora.r} alpha={lora.alpha:g} on {len(adapted)} layers")
    if section.freeze is not None:
        try:
            frozen = freeze(model, section.freeze)
        except ValueError as exc:
            raise ConfigError(f"finetune.freeze: {exc}") from None
        notes.append(f"froze {len(frozen)} tensors ({section.freeze if isinstance(section.freeze, str) else ', '.join(section.freeze)})")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("finetune: every parameter is frozen; unfreeze the head (freeze: all_but_head) or add LoRA")
    notes.append(trainable_summary(model))
    return notes


def optimizer_lr_scales(model: nn.Module, section, recipe_kwargs: dict[str, Any]) -> dict[str, float] | None:
    """finetune.lr_decay as the optimizer's per-parameter lr scales (None when not set)."""
    if section is None or section.lr_decay is None:
        return None
    if "lr_scale" in recipe_kwargs:
        raise ConfigError("set finetune.lr_decay or optimizer.lr_scale, not both")
    return discriminative_lr_scales(model, section.lr_decay)
