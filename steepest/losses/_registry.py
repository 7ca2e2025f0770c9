"""The loss registry: recipe name -> nn.Module class (a thin wrapper over a functional loss).

Flags:
  task   the tasks the loss fits: "classification", "regression", "binary", "multilabel", a tuple
         of them, or "any"; "pairs"/"preference" for losses that do not take (outputs, targets)
"""

from __future__ import annotations

from steepest.losses import modules as M
from steepest.registry import Registry

LOSSES = Registry("loss")

R = LOSSES.register
R("mse", M.MSE, task="regression", summary="Mean squared error.")
R("mae", M.MAE, task="regression", summary="Mean absolute error.")
R("huber", M.Huber, task="regression", summary="Huber loss (quadratic near 0, linear beyond delta).")
R("smooth_l1", M.SmoothL1, task="regression", summary="Smooth L1 (Huber / beta).")
R("cross_entropy", M.CrossEntropy, task="classification", summary="Cross-entropy on logits: label smoothing, soft targets, class weights.")
R("nll", M.NLL, task="classification", summary="Negative log-likelihood of log-probabilities.")
R("bce_with_logits", M.BCEWithLogits, task=("binary", "multilabel"), summary="Binary cross-entropy on logits with pos_weight.")
R("focal", M.Focal, task=("classification", "binary"), summary="Focal loss for class imbalance (Lin et al. 2017).")
R("dice", M.Dice, task=("binary", "multilabel"), summary="Soft Dice loss (segmentation).")
R("bce_dice", M.BCEDice, task=("binary", "multilabel"), summary="BCE + Dice.")
R("kl_distillation", M.KLDistillation, task="any", summary="Knowledge distillation: T^2 KL of softened distributions.")
R("contrastive", M.Contrastive, task="pairs", summary="Contrastive loss with a margin (Hadsell et al. 2006).")
R("triplet", M.Triplet, task="pairs", summary="Triplet loss with a margin, optional batch-hard mining.")
R("bradley_terry", M.BradleyTerry, task="preference", summary="Reward-model preference loss -log sigma(r_c - r_r).")
R("dpo", M.DPO, task="preference", summary="Direct preference optimization loss (Rafailov et al. 2023).")
