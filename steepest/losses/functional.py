"""Every loss as a function of tensors, in one namespace (`from steepest.losses import functional as L`).

Each returns a scalar (the mean over the batch unless `reduction` says otherwise); the families
live in their own files, and `modules.py` wraps them for recipes.

    regression       mse, mae, huber, smooth_l1
    classification   cross_entropy (label smoothing, soft targets), nll, bce_with_logits, focal, soft_targets
    segmentation     dice, bce_dice
    metric           contrastive, triplet, batch_hard_triplet
    distillation     kl_distillation
    preference       bradley_terry, dpo
    penalties        l1_penalty, l2_penalty, elastic_net (over a model's weights)
"""

from steepest.losses.classification import bce_with_logits, cross_entropy, focal, nll, soft_targets
from steepest.losses.distillation import kl_distillation
from steepest.losses.metric import batch_hard_triplet, contrastive, triplet
from steepest.losses.penalties import elastic_net, l1_penalty, l2_penalty, penalized_parameters
from steepest.losses.preference import bradley_terry, dpo
from steepest.losses.regression import huber, mae, mse, smooth_l1
from steepest.losses.segmentation import bce_dice, dice

__all__ = [
    "batch_hard_triplet", "bce_dice", "bce_with_logits", "bradley_terry", "contrastive", "cross_entropy", "dice",
    "dpo", "elastic_net", "focal", "huber", "kl_distillation", "l1_penalty", "l2_penalty", "mae", "mse", "nll",
    "penalized_parameters", "smooth_l1", "soft_targets", "triplet",
]
