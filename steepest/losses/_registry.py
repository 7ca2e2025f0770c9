"""The loss registry: recipe name -> nn.Module class (a thin wrapper over a functional loss).

`LOSSES.get(name).target(**kwargs)` builds a callable; for the supervised losses it is
`loss(outputs, targets) -> scalar tensor`.

Flags:
  task   the data tasks the loss fits, as the Trainer checks them: "classification", "regression",
         "binary", "multilabel", a tuple of them, or "any". Losses that do not take a data set's
         (outputs, targets) say what they take instead: "pairs" (embeddings, for metric learning),
         "preference" (chosen/rejected scores or log-probs), "distillation" (teacher logits as
         targets); the Trainer's task check rejects them for ordinary data, by design.
  class_weight  the keyword argument through which `data.balance: class_weights` weights the loss:
         "weight" (one weight per class), "alpha" (focal: per class, or the positives' share for a
         binary task), "pos_weight" (binary cross entropy: n_neg / n_pos). A loss without it takes
         no class weights.
"""

from __future__ import annotations

from steepest.losses import modules as M
from steepest.registry import Registry

LOSSES = Registry("loss")

R = LOSSES.register
R("mse", M.MSE, task="regression", summary="Mean squared error.")
R("mae", M.MAE, task="regression", summary="Mean absolute error (L1), robust to outliers.")
R("huber", M.Huber, task="regression", summary="Huber loss: quadratic within delta, linear beyond.")
R("smooth_l1", M.SmoothL1, task="regression", summary="Smooth L1 (Huber / beta), Fast R-CNN.")
R("cross_entropy", M.CrossEntropy, task="classification", class_weight="weight",
  summary="Cross-entropy on logits: label smoothing, soft targets (mixup/CutMix), class weights.")
R("nll", M.NLL, task="classification", class_weight="weight", summary="Negative log-likelihood of log-probabilities.")
R("bce_with_logits", M.BCEWithLogits, task=("binary", "multilabel"), class_weight="pos_weight", summary="Binary cross-entropy on logits, pos_weight.")
R("focal", M.Focal, task=("classification", "binary", "multilabel"), class_weight="alpha",
  summary="Focal loss for class imbalance (Lin et al. 2017): softmax or sigmoid form.")
R("dice", M.Dice, task=("binary", "multilabel", "classification"), summary="Soft Dice loss (segmentation overlap).")
R("bce_dice", M.BCEDice, task=("binary", "multilabel"), summary="Weighted BCE + Dice for masks.")
R("next_token", "steepest.losses.language:NextToken", task="language_modeling",
  summary="Causal language modeling: cross-entropy of logits (N, T, V) against the next tokens (N, T), mean over tokens.")
R("kl_distillation", M.KLDistillation, task="distillation",
  summary="Knowledge distillation: T^2 KL of temperature-softened distributions (targets = teacher logits).")
R("contrastive", M.Contrastive, task="metric", defaults={"batch_pairs": True},
  summary="Contrastive loss with a margin (Hadsell et al. 2006); in recipes over every pair of a batch (embeddings, labels).")
R("triplet", M.Triplet, task="metric", defaults={"batch_hard": True},
  summary="Triplet loss with a margin (Schroff et al. 2015); in recipes batch-hard mining (Hermans et al. 2017).")
R("bradley_terry", M.BradleyTerry, task="preference", summary="Reward-model preference loss -log sigma(r_c - r_r).")
R("dpo", M.DPO, task="preference", summary="Direct preference optimization (Rafailov et al. 2023).")
