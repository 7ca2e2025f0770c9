"""nn.Module wrappers of the functional losses, so recipes can name them (`loss: {name: focal, gamma: 2}`).

Supervised losses take `(outputs, targets)`. The pair, triplet and preference losses keep the
arguments of their functional form (see each class); `triplet` with `batch_hard=True` and
`kl_distillation` (targets = the teacher's logits) also fit `(outputs, targets)`. Per-class
weights are buffers, so they follow the module's device.

A loss whose mean does not divide by the number of samples says what it divides by:
`normalizer(targets)` (None: the samples). The Engine weights accumulated micro-batches by it, so
k micro-batches give exactly the one-batch loss (a class-weighted cross entropy divides by the
summed weights of the targets' classes, as torch's does).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from steepest.losses import functional as L


class _Loss(nn.Module):
    def __init__(self) -> None:  # no arguments (not nn.Module's *args, **kwargs): a recipe key MSE does not take is refused
        super().__init__()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")

    def _buffer(self, name: str, value: float | list[float] | None) -> None:
        self.register_buffer(name, None if value is None else torch.tensor(value, dtype=torch.float32))

    @staticmethod
    def _like(buffer: Tensor | None, outputs: Tensor) -> Tensor | None:
        return None if buffer is None else buffer.to(device=outputs.device, dtype=outputs.dtype)


def _weight_sum(weight: Tensor | None, targets: Tensor, ignore_index: int = -100) -> Tensor | None:
    """The denominator of torch's mean over index targets, the targets equal to `ignore_index` left
    out: sum_i w[y_i] with class weights; without them, the count of the kept targets when the
    targets are per position (N, d1, ...: sequences, segmentation masks, where padding is usual);
    None (the samples) for plain (N,) class labels and for soft targets (mixup)."""
    if targets.is_floating_point() and targets.dim() > 1:
        return None  # soft targets: the mean is over samples
    keep = targets != ignore_index
    if weight is None:
        return keep.sum() if targets.dim() > 1 else None
    return weight.to(targets.device)[targets.long().where(keep, 0)].mul(keep).sum()


class MSE(_Loss):
    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.mse(outputs, targets)


class MAE(_Loss):
    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.mae(outputs, targets)


class Huber(_Loss):
    def __init__(self, delta: float = 1.0):
        super().__init__()
        if delta <= 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        self.delta = delta

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.huber(outputs, targets, self.delta)


class SmoothL1(_Loss):
    def __init__(self, beta: float = 1.0):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta = beta

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.smooth_l1(outputs, targets, self.beta)


class CrossEntropy(_Loss):
    """Class indices or soft targets (N, K) (mixup/CutMix); label smoothing; per-class weights."""

    def __init__(self, label_smoothing: float = 0.0, weight: list[float] | None = None, ignore_index: int = -100):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing, self.ignore_index = label_smoothing, ignore_index
        self._buffer("weight", weight)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.cross_entropy(outputs, targets, self.label_smoothing, self._like(self.weight, outputs),
                               ignore_index=self.ignore_index)

    def normalizer(self, targets: Tensor) -> Tensor | None:
        return _weight_sum(self.weight, targets, self.ignore_index)


class NLL(_Loss):
    def __init__(self, weight: list[float] | None = None, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index
        self._buffer("weight", weight)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.nll(outputs, targets, self._like(self.weight, outputs), ignore_index=self.ignore_index)

    def normalizer(self, targets: Tensor) -> Tensor | None:
        return _weight_sum(self.weight, targets, self.ignore_index)


class BCEWithLogits(_Loss):
    def __init__(self, pos_weight: float | list[float] | None = None):
        super().__init__()
        self._buffer("pos_weight", pos_weight)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.bce_with_logits(outputs, targets, self._like(self.pos_weight, outputs))


class Focal(_Loss):
    """Multiclass with class-index targets (alpha per class); binary/multilabel with 0/1 targets.
    Targets equal to `ignore_index` are left out; the mean is over the others, so
    `normalizer(targets)` counts them (accumulated micro-batches weigh every kept target equally)."""

    def __init__(self, gamma: float = 2.0, alpha: float | list[float] | None = None, ignore_index: int = -100,
                 multiclass: bool | None = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.ignore_index, self.multiclass = gamma, ignore_index, multiclass
        self._buffer("alpha", alpha)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.focal(outputs, targets, self.gamma, self._like(self.alpha, outputs), ignore_index=self.ignore_index,
                       multiclass=self.multiclass)

    def normalizer(self, targets: Tensor) -> Tensor | None:
        if self.multiclass and targets.is_floating_point() and targets.dim() > 1:
            return None  # probability targets: a mean over samples
        return (targets != self.ignore_index).sum()


class Dice(_Loss):
    """Pixels whose target is `ignore_index` count in no sum. No `normalizer`: Dice is a ratio of
    sums over the batch, not a mean over a count, so micro-batches weigh by their samples."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = -100):
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.dice(outputs, targets, self.smooth, self.ignore_index)


class BCEDice(_Loss):
    def __init__(self, bce_weight: float = 0.5, smooth: float = 1.0):
        super().__init__()
        if not 0 <= bce_weight <= 1:
            raise ValueError(f"bce_weight must be in [0, 1], got {bce_weight}")
        self.bce_weight, self.smooth = bce_weight, smooth

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.bce_dice(outputs, targets, self.bce_weight, self.smooth)


class KLDistillation(_Loss):
    """forward(student_logits, teacher_logits)."""

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return L.kl_distillation(outputs, targets, self.temperature)


class Contrastive(_Loss):
    """forward(a, b, similar), or with `batch_pairs=True` forward(embeddings (B, D), labels (B,)):
    the mean over every pair i < j of the batch, similar when the labels match."""

    def __init__(self, margin: float = 1.0, batch_pairs: bool = False):
        super().__init__()
        self.margin, self.batch_pairs = margin, batch_pairs

    def forward(self, *args: Tensor) -> Tensor:
        if not self.batch_pairs:
            return L.contrastive(*args, margin=self.margin)
        embeddings, labels = args
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        return L.contrastive(embeddings[i], embeddings[j], labels[i] == labels[j], self.margin)


class Triplet(_Loss):
    """forward(anchor, positive, negative), or with `batch_hard=True` forward(embeddings, labels)."""

    def __init__(self, margin: float = 1.0, batch_hard: bool = False):
        super().__init__()
        self.margin, self.batch_hard = margin, batch_hard

    def forward(self, *args: Tensor) -> Tensor:
        if self.batch_hard:
            return L.batch_hard_triplet(*args, margin=self.margin)
        return L.triplet(*args, margin=self.margin)


class BradleyTerry(_Loss):
    """forward(chosen_rewards, rejected_rewards)."""

    def __init__(self, margin: float = 0.0):
        super().__init__()
        self.margin = margin

    def forward(self, chosen: Tensor, rejected: Tensor) -> Tensor:
        return L.bradley_terry(chosen, rejected, self.margin)


class DPO(_Loss):
    """forward(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    -> (loss, chosen_rewards, rejected_rewards, reward_accuracy)."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        if beta <= 0 or not 0 <= label_smoothing < 0.5:
            raise ValueError("dpo needs beta > 0 and label_smoothing in [0, 0.5)")
        self.beta, self.label_smoothing = beta, label_smoothing

    def forward(self, pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return L.dpo(pc, pr, rc, rr, self.beta, self.label_smoothing)
