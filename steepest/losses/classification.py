"""Classification losses on logits: cross-entropy (label smoothing, soft targets), NLL,
BCE-with-logits and focal loss. The class dimension is 1, as in torch: logits (N, K) or
(N, K, d1, ...), class-index targets (N,) or (N, d1, ...)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from steepest.losses._reduce import reduce


def _is_index_target(logits: Tensor, target: Tensor) -> bool:
    return target.dim() == logits.dim() - 1


def soft_targets(target: Tensor, num_classes: int, label_smoothing: float = 0.0) -> Tensor:
    """Class indices (N,) or probabilities (N, K) -> probabilities, smoothed: (1 - eps) q + eps / K.

    >>> soft_targets(torch.tensor([1]), 4, 0.2)
    tensor([[0.0500, 0.8500, 0.0500, 0.0500]])
    """
    probs = F.one_hot(target, num_classes).to(torch.get_default_dtype()) if target.dim() == 1 else target
    return probs * (1 - label_smoothing) + label_smoothing / num_classes if label_smoothing else probs


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0, weight: Tensor | None = None,
                  reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy on logits, -sum_k q_k w_k log softmax(z)_k, with q the label smoothed as
    (1 - eps) onehot(y) + eps / K (Szegedy et al. 2016), or a given distribution (N, K) such as the
    soft targets of mixup/CutMix (label smoothing applies to it too).

    Both forms run torch's kernel, so this equals nn.CrossEntropyLoss(label_smoothing=eps) exactly;
    with class weights and index targets the mean is weighted, as in torch. Float targets with one
    dimension fewer than the logits are read as class indices; index targets equal to
    `ignore_index` (-100) are left out of the sum and the mean, as in torch.

    >>> z = torch.tensor([[2.0, 0.0, 0.0]])
    >>> round(float(cross_entropy(z, torch.tensor([0]))), 4), round(float(cross_entropy(z, torch.tensor([[1.0, 0, 0]]))), 4)
    (0.2395, 0.2395)
    """
    if _is_index_target(logits, target):
        target = target.long()
    else:
        target = target.reshape(logits.shape).to(logits.dtype)
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing, reduction=reduction,
                           ignore_index=ignore_index)


def nll(log_probs: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean",
        ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood, -log p_y, from log-probabilities (a LogSoftmax output layer);
    targets equal to `ignore_index` are left out, as in torch.

    >>> float(nll(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([1])))
    0.6931471824645996
    """
    return F.nll_loss(log_probs, target.long(), weight=weight, reduction=reduction, ignore_index=ignore_index)


def bce_with_logits(logits: Tensor, target: Tensor, pos_weight: Tensor | float | None = None,
                    reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits, computed stably (log-sum-exp), one output per label:

        l = -[w_p y log sigma(z) + (1 - y) log(1 - sigma(z))]

    `pos_weight` w_p (a scalar or one per label) up-weights positives: n_neg / n_pos balances them.

    >>> round(float(bce_with_logits(torch.tensor([0.0]), torch.tensor([1.0]), pos_weight=2.0)), 4)
    1.3863
    """
    target = target.reshape(logits.shape).to(logits.dtype)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction=reduction)


def focal(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: Tensor | float | list[float] | None = None,
          reduction: str = "mean", ignore_index: int = -100, multiclass: bool | None = None) -> Tensor:
    """Focal loss (Lin et al. 2017, RetinaNet): cross-entropy scaled down on easy examples,

        FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t

    Multiclass (softmax) for logits (N, K > 1, ...) with class-index targets, alpha_t = alpha[y]
    (one weight per class). Binary or multilabel (sigmoid, per element) otherwise: logits (N,),
    (N, 1) or (N, K) with 0/1 targets of the same shape, alpha_t = alpha for positives and
    1 - alpha for negatives (alpha a scalar, or one per label). gamma = 0 and alpha None is
    cross-entropy.

    `multiclass=True` (what a recipe's multiclass classification task sets) keeps the softmax form
    for probability targets (N, K) too, one-hot or soft (mixup, CutMix, label smoothing):
    FL = -sum_k q_k alpha_k (1 - p_k)^gamma log p_k, which is the index form for one-hot q. None
    (the default) decides from the targets: class indices are multiclass, anything else sigmoid.

    Targets equal to `ignore_index` (a class index, or an element of a 0/1 target; -100 as in
    torch) add nothing: "none" gives 0 there, "sum" leaves them out and "mean" divides by the
    number of the other targets. With every target ignored the mean is 0, with a zero gradient
    (torch's cross entropy gives nan, 0/0), so an accumulated micro-batch of padding stays finite.

    >>> z, y = torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 0])
    >>> float(focal(z, y, gamma=0.0)) == float(cross_entropy(z, y))
    True
    >>> float(focal(z, torch.tensor([0, -100]), gamma=0.0)) == float(cross_entropy(z, torch.tensor([0, -100])))
    True
    """
    index = logits.dim() >= 2 and logits.shape[1] > 1 and _is_index_target(logits, target)
    if multiclass and not index:  # probabilities over the K classes (N, K, ...)
        q = target.reshape(logits.shape).to(logits.dtype)
        log_p = F.log_softmax(logits, dim=1)
        a = 1.0
        if alpha is not None:
            a = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
            a = a.reshape(1, -1, *([1] * (logits.dim() - 2))) if a.dim() else a
        loss = -(q * a * (1 - log_p.exp()).pow(gamma) * log_p).sum(1)
        return reduce(loss, reduction)
    if index:
        target = target.long()
        keep = target != ignore_index
        target = target.where(keep, 0)
        log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        a = 1.0
        if alpha is not None:
            a = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
            a = a[target] if a.dim() else a
    else:
        y = target.reshape(logits.shape).to(logits.dtype)
        keep = y != ignore_index
        y = y.where(keep, 0)
        log_pt = y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)
        a = 1.0
        if alpha is not None:
            a = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
            a = y * a + (1 - y) * (1 - a)
    loss = torch.where(keep, -a * (1 - log_pt.exp()).pow(gamma) * log_pt, 0.0)
    if reduction == "mean":  # over the kept targets; 0 (not 0/0) when there are none
        return loss.sum() / keep.sum().clamp_min(1)
    return reduce(loss, reduction)
