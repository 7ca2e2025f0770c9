"""Loss functions, functional first. Each takes tensors and returns a scalar (mean over the batch
unless `reduction` says otherwise); the modules in `modules.py` wrap them for recipes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def mse(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """mean((y_hat - y)^2)."""
    return _reduce((pred - target.reshape(pred.shape)).square(), reduction)


def mae(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """mean(|y_hat - y|)."""
    return _reduce((pred - target.reshape(pred.shape)).abs(), reduction)


def huber(pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """0.5 e^2 where |e| <= delta, else delta (|e| - 0.5 delta)  (Huber 1964)."""
    e = (pred - target.reshape(pred.shape)).abs()
    return _reduce(torch.where(e <= delta, 0.5 * e.square(), delta * (e - 0.5 * delta)), reduction)


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Huber divided by beta: 0.5 e^2 / beta where |e| < beta, else |e| - 0.5 beta  (Fast R-CNN)."""
    e = (pred - target.reshape(pred.shape)).abs()
    return _reduce(torch.where(e < beta, 0.5 * e.square() / beta, e - 0.5 * beta), reduction)


def soft_targets(target: Tensor, num_classes: int, label_smoothing: float = 0.0) -> Tensor:
    """Class indices (N,) or probabilities (N, K) -> probabilities, smoothed: (1 - eps) y + eps / K."""
    probs = F.one_hot(target, num_classes).to(torch.get_default_dtype()) if target.dim() == 1 else target
    return probs * (1 - label_smoothing) + label_smoothing / num_classes if label_smoothing else probs


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0, weight: Tensor | None = None,
                  reduction: str = "mean") -> Tensor:
    """-sum_k q_k log softmax(z)_k, with q the (smoothed) one-hot label or a given distribution
    (mixup/CutMix soft targets). Class indices go through torch's kernel."""
    if target.dim() == 1 and not target.is_floating_point():
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing, reduction=reduction)
    q = soft_targets(target.to(logits.dtype), logits.shape[-1], label_smoothing)
    per = -(q * F.log_softmax(logits, dim=-1) * (weight if weight is not None else 1.0)).sum(-1)
    return _reduce(per, reduction)


def nll(log_probs: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """-log p_y from log-probabilities (pair it with a LogSoftmax output layer)."""
    return F.nll_loss(log_probs, target, reduction=reduction)


def bce_with_logits(logits: Tensor, target: Tensor, pos_weight: Tensor | float | None = None, reduction: str = "mean") -> Tensor:
    """-[w_p y log sigma(z) + (1 - y) log(1 - sigma(z))], computed stably from logits."""
    target = target.reshape(logits.shape).to(logits.dtype)
    if pos_weight is not None and not isinstance(pos_weight, Tensor):
        pos_weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction=reduction)


def focal(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: Tensor | float | None = None, reduction: str = "mean") -> Tensor:
    """Focal loss (Lin et al. 2017): -alpha_t (1 - p_t)^gamma log p_t. Binary when logits have one
    column (or are 1-D), multiclass otherwise; alpha is a scalar (binary: weight of positives) or per class."""
    if logits.dim() == 1 or logits.shape[-1] == 1:
        z = logits.reshape(-1)
        y = target.reshape(-1).to(z.dtype)
        log_p = F.logsigmoid(z)
        log_q = F.logsigmoid(-z)
        log_pt = y * log_p + (1 - y) * log_q
        a = 1.0 if alpha is None else (y * alpha + (1 - y) * (1 - alpha))
    else:
        log_probs = F.log_softmax(logits, dim=-1)
        log_pt = log_probs.gather(-1, target.reshape(-1, 1)).squeeze(-1)
        if alpha is None:
            a = 1.0
        else:
            alpha_t = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
            a = alpha_t[target] if alpha_t.dim() else alpha_t
    pt = log_pt.exp()
    return _reduce(-a * (1 - pt).pow(gamma) * log_pt, reduction)


def dice(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - (2 |P.Y| + s) / (|P| + |Y| + s) on probabilities (sigmoid for one channel / binary masks,
    softmax over classes otherwise), averaged over classes (Milletari et al. 2016)."""
    if logits.dim() == 1 or logits.shape[1] == 1:
        p = torch.sigmoid(logits).reshape(logits.shape[0], -1)
        y = target.reshape(logits.shape[0], -1).to(p.dtype)
        inter, total = (p * y).sum(), p.sum() + y.sum()
        return 1 - (2 * inter + smooth) / (total + smooth)
    p = torch.softmax(logits, dim=1)
    y = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(p.dtype) if target.dim() == logits.dim() - 1 else target.to(p.dtype)
    dims = (0, *range(2, p.dim()))
    inter, total = (p * y).sum(dims), p.sum(dims) + y.sum(dims)
    return (1 - (2 * inter + smooth) / (total + smooth)).mean()


def bce_dice(logits: Tensor, target: Tensor, bce_weight: float = 0.5, smooth: float = 1.0) -> Tensor:
    """bce_weight * BCE + (1 - bce_weight) * Dice, for binary segmentation masks."""
    return bce_weight * bce_with_logits(logits, target) + (1 - bce_weight) * dice(logits, target, smooth)


def contrastive(a: Tensor, b: Tensor, similar: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """Hadsell et al. 2006: y d^2 + (1 - y) max(0, m - d)^2 with d = ||a - b||, y = 1 for similar pairs."""
    d = torch.linalg.vector_norm(a - b, dim=-1)
    y = similar.to(d.dtype)
    return _reduce(y * d.square() + (1 - y) * F.relu(margin - d).square(), reduction)


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """max(0, ||a - p|| - ||a - n|| + margin)  (Schroff et al. 2015)."""
    d_ap = torch.linalg.vector_norm(anchor - positive, dim=-1)
    d_an = torch.linalg.vector_norm(anchor - negative, dim=-1)
    return _reduce(F.relu(d_ap - d_an + margin), reduction)


def batch_hard_triplet(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """Batch-hard mining (Hermans et al. 2017): for each anchor the farthest positive and the
    nearest negative in the batch."""
    d = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_pos = torch.where(same & ~eye, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(~same, d, torch.full_like(d, float("inf"))).amin(1)
    valid = (same & ~eye).any(1) & (~same).any(1)
    losses = F.relu(hardest_pos - hardest_neg + margin)
    return losses[valid].mean() if valid.any() else embeddings.sum() * 0


def kl_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """Hinton et al. 2015: T^2 KL(softmax(t / T) || softmax(s / T)), averaged over the batch."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return kl.mean() * t * t


def bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor, margin: float = 0.0) -> Tensor:
    """Reward-model loss: -log sigma(r_chosen - r_rejected - margin)  (Bradley & Terry 1952)."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards - margin).mean()


def dpo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
        beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Direct preference optimization (Rafailov et al. 2023).

    r_c = beta (log pi(y_c|x) - log pi_ref(y_c|x)), r_r likewise; loss = -log sigma(r_c - r_r)
    (conservative DPO with label_smoothing e: -(1 - e) log sigma(h) - e log sigma(-h)).
    Returns (loss, chosen_rewards, rejected_rewards, reward_accuracy), rewards detached.
    """
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    h = chosen - rejected
    loss = (-(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)).mean()
    return loss, chosen.detach(), rejected.detach(), (h > 0).float().mean().detach()


def _penalized(model: torch.nn.Module) -> list[Tensor]:
    from steepest.optim.param_groups import no_decay_names

    skip = no_decay_names(model)
    return [p for n, p in model.named_parameters() if n not in skip and p.requires_grad]


def l1_penalty(model: torch.nn.Module) -> Tensor:
    """sum |w| over weights (biases and normalization parameters excluded)."""
    return sum(p.abs().sum() for p in _penalized(model))


def l2_penalty(model: torch.nn.Module) -> Tensor:
    """0.5 sum w^2 over weights (biases and normalization parameters excluded)."""
    return 0.5 * sum(p.square().sum() for p in _penalized(model))


def elastic_net(model: torch.nn.Module, l1: float = 1e-4, l2: float = 1e-4) -> Tensor:
    """l1 * sum |w| + l2 * 0.5 sum w^2 (Zou & Hastie 2005)."""
    return l1 * l1_penalty(model) + l2 * l2_penalty(model)
