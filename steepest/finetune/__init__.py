"""Transfer learning: pretrained weights, freezing, gradual unfreezing, discriminative learning
rates (Howard & Ruder 2018, ULMFiT) and LoRA (Hu et al. 2021). Recipes reach it through the `finetune:` section."""

from steepest.finetune.apply import prepare_model
from steepest.finetune.freeze import (
    GradualUnfreezing,
    discriminative_lr_scales,
    freeze,
    layer_groups,
    trainable_names,
    trainable_summary,
)
from steepest.finetune.lora import LoRALinear, apply_lora, lora_state_dict, merge_lora
from steepest.finetune.pretrained import LoadReport, load_pretrained

__all__ = ["GradualUnfreezing", "LoRALinear", "LoadReport", "apply_lora", "discriminative_lr_scales", "freeze", "layer_groups",
           "load_pretrained", "lora_state_dict", "merge_lora", "prepare_model", "trainable_names", "trainable_summary"]
