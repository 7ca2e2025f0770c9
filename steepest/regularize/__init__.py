"""Regularizers: mixup/CutMix batch transforms, DropConnect, dropout helpers (label smoothing lives in
the losses: `cross_entropy(label_smoothing=...)` and `soft_targets`)."""

from steepest.losses.functional import soft_targets as smooth_targets
from steepest.registry import Registry
from steepest.regularize.dropconnect import (
           DropConnectLinear,
           apply_dropconnect,
           insert_dropout,
           set_dropout,
)
from steepest.regularize.mix import CutMix, Mixup, MixupCutMix

BATCH_TRANSFORMS = Registry("batch transform")
BATCH_TRANSFORMS.register("mixup", Mixup, summary="mixup: convex combinations of inputs and soft labels.")
BATCH_TRANSFORMS.register("cutmix", CutMix, summary="CutMix: paste a box from another image; labels by area.")
BATCH_TRANSFORMS.register("mixup_cutmix", MixupCutMix, summary="mixup or CutMix, switched per batch.")

__all__ = ["BATCH_TRANSFORMS", "CutMix", "DropConnectLinear", "Mixup", "MixupCutMix", "apply_dropconnect", "insert_dropout",
           "set_dropout", "smooth_targets"]
