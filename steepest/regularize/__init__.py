"""Regularizers: mixup/CutMix batch transforms (explicit torch.Generator), label smoothing as soft
targets, DropConnect, and dropout placement/rates.

Batch transforms by recipe name (`batch_transform: {name: mixup_cutmix, ...}`):

    >>> sorted(BATCH_TRANSFORMS)
    ['cutmix', 'mixup', 'mixup_cutmix']
"""

from steepest.registry import Registry
from steepest.regularize.dropconnect import (
    DropConnectConv2d,
    DropConnectLinear,
    apply_dropconnect,
    drop_weights,
)
from steepest.regularize.dropout import HIDDEN_ACTIVATIONS, insert_dropout, set_dropout
from steepest.regularize.mix import BatchMix, CutMix, Mixup, MixupCutMix, cutmix_box, sample_beta
from steepest.regularize.smoothing import smooth_targets

BATCH_TRANSFORMS = Registry("batch transform")
BATCH_TRANSFORMS.register("mixup", Mixup, summary="mixup: convex combinations of inputs and soft labels (Zhang et al. 2018).")
BATCH_TRANSFORMS.register("cutmix", CutMix, summary="CutMix: paste a box from another image; labels by pixel share (Yun et al. 2019).")
BATCH_TRANSFORMS.register("mixup_cutmix", MixupCutMix, summary="mixup or CutMix, switched per batch with switch_prob.")
TRANSFORMS = BATCH_TRANSFORMS  # the same registry under its short name

__all__ = [
    "BATCH_TRANSFORMS", "HIDDEN_ACTIVATIONS", "TRANSFORMS", "BatchMix", "CutMix", "DropConnectConv2d", "DropConnectLinear",
    "Mixup", "MixupCutMix", "apply_dropconnect", "cutmix_box", "drop_weights", "insert_dropout", "sample_beta",
    "set_dropout", "smooth_targets",
]
