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
        if getattr(section, "inputs_note", None):  # a registered vision model: the image preprocessing against its own
            notes.append(section.inputs_note)
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
    _refuse_no_ops(model, section)
    notes.append(trainable_summary(model))
    return notes


def _refuse_no_ops(model: nn.Module, section) -> None:
    """Combinations that would silently do nothing: `freeze` over every LoRA adapter (only the head
    would train), and gradual unfreezing or `lr_decay` when at most one layer group is left
    trainable (frozen tensors stay frozen: there is nothing to thaw or to scale below the head)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if section.lora is not None and section.freeze is not None and not any(".lora_" in f".{n}" for n in trainable):
        raise ConfigError("finetune.freeze froze every LoRA adapter, so only the head would train; LoRA already freezes the "
                          "base weights: drop finetune.freeze (lora.train_head trains the head too)")
    live_groups = [g for g in layer_groups(model) if any(n in trainable for n in g)]
    if len(live_groups) <= 1:
        for key in ("unfreeze_every_n_epochs", "lr_decay"):
            if getattr(section, key, None) is not None:
                what = "finetune.freeze" if section.freeze is not None else "finetune.lora"
                raise ConfigError(f"finetune.{key}: after {what} only one layer group trains, so it would change nothing (frozen "
                                  f"tensors stay frozen); drop {what}, or drop {key}")


def optimizer_lr_scales(model: nn.Module, section, recipe_kwargs: dict[str, Any]) -> dict[str, float] | None:
    """finetune.lr_decay (discriminative lr per layer group) or finetune.backbone_lr (every layer
    but the head at that fraction) as the optimizer's per-parameter lr scales (None when not set)."""
    if section is None or (section.lr_decay is None and section.backbone_lr is None):
        return None
    if section.lr_decay is not None and section.backbone_lr is not None:
        raise ConfigError("set finetune.lr_decay or finetune.backbone_lr, not both")
    if "lr_scale" in recipe_kwargs:
        raise ConfigError(f"set finetune.{'lr_decay' if section.lr_decay is not None else 'backbone_lr'} or optimizer.lr_scale, not both")
    if section.lr_decay is not None:
        return discriminative_lr_scales(model, section.lr_decay)
    head = set(layer_groups(model)[-1])
    return {name: section.backbone_lr for name, _ in model.named_parameters() if name not in head}


SMALL_PER_CLASS = 1000  # training samples per class below which a target data set counts as small


def plan_finetune(section, n_train: int, num_classes: int | None):
    """`finetune: {plan: auto}` resolved from the target data's size and its `similarity` to the
    pretraining task (the transfer-learning rule of thumb: CS231n "Transfer Learning" notes;
    Yosinski et al. 2014 on how features get task-specific with depth):

        small and similar     train the head only (freeze: all_but_head): the features already fit
        small and different  train the head, lower layers at 1/100 of the lr (backbone_lr 0.01)
        large and similar    fine-tune everything, lower layers at 1/10 of the lr (backbone_lr 0.1)
        large and different  fine-tune everything at the full lr

    "Small" is under SMALL_PER_CLASS training samples per class (per 1000 samples for regression).
    Returns (the section with freeze/backbone_lr set, a line saying what was chosen and why).
    Choices already made in the section (freeze, lr_decay, backbone_lr) are kept."""
    per_class = n_train / max(num_classes or 1, 1)
    small = per_class < SMALL_PER_CLASS
    size = f"{'small' if small else 'large'} ({n_train:,} training samples, {per_class:,.0f} per class)"
    if small and section.similarity == "similar":
        choice, update = "train the head only (freeze: all_but_head)", {"freeze": "all_but_head"}
    elif small:
        choice, update = "train the head, other layers at 1/100 of the lr (backbone_lr: 0.01)", {"backbone_lr": 0.01}
    elif section.similarity == "similar":
        choice, update = "fine-tune everything, lower layers at 1/10 of the lr (backbone_lr: 0.1)", {"backbone_lr": 0.1}
    else:
        choice, update = "fine-tune everything at the full lr", {}
    kept = {k: v for k, v in update.items() if getattr(section, k) is None and not (k == "backbone_lr" and section.lr_decay is not None)}
    note = f"plan auto: target data {size}, {section.similarity} to the pretraining task -> {choice}"
    if kept != update:
        note += " (the section's own freeze / lr choices kept)"
    return section.model_copy(update={**kept, "plan": None}), note
