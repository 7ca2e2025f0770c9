"""Class imbalance, handled after the split on the training split only (so the held-out splits keep the real class mix): class weights,
random oversampling, SMOTE-style interpolation, ADASYN (SMOTE weighted towards the minority samples
that are hard to learn), undersampling that keeps the hard majority samples, and the sampling
weights of a weighted sampler.

    data: {balance: smote}        # none | class_weights | sampler | oversample | smote | adasyn | undersample
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("none", "class_weights", "sampler", "oversample", "smote", "adasyn", "undersample")


@dataclass
class Balanced:
    """What a balance mode does to training: the (possibly resampled) training inputs and labels,
    per-sample sampling weights for the loader (`sampler`), per-class loss weights (`class_weights`)."""

    x: torch.Tensor
    y: torch.Tensor
    sample_weights: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None


def balance(x: torch.Tensor, y: torch.Tensor, mode: str, num_classes: int, generator: torch.Generator) -> Balanced:
    """Every `data.balance` mode, decided here and only here, for the training split (labels (N,)
    or (N, 1)): `class_weights` -> inverse-frequency weights for the loss (its own class-weight
    argument); `sampler` -> per-sample weights for a sampler with replacement; `oversample`,
    `smote`, `adasyn`, `undersample` -> a resampled training split; `none` -> unchanged."""
    if mode not in MODES:
        raise ValueError(f"balance must be one of {', '.join(MODES)}, got {mode!r}")
    labels = y.reshape(-1).long()
    if mode == "class_weights":
        return Balanced(x, y, class_weights=class_weights(labels, num_classes))
    if mode == "sampler":
        return Balanced(x, y, sample_weights=sample_weights(labels, num_classes))
    if mode in ("oversample", "smote", "adasyn", "undersample"):
        if mode == "oversample":
            bx, by = oversample(x, labels, num_classes, generator)
        elif mode == "smote":
            bx, by = smote(x, labels, num_classes, generator)
        elif mode == "adasyn":
            bx, by = adasyn(x, labels, num_classes, generator)
        else:
            bx, by = undersample_hard(x, labels, num_classes)
        return Balanced(bx, by.to(y.dtype).reshape(-1, *y.shape[1:]))
    return Balanced(x, y)


def class_counts(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(y.reshape(-1).long(), minlength=num_classes)


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (K n_c), so a balanced data set gets all ones."""
    counts = class_counts(y, num_classes).double()
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts)).float()


def sample_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-sample weights for a weighted sampler: every class is drawn equally often."""
    return class_weights(y, num_classes)[y.reshape(-1).long()]


def oversample(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat random minority samples until every class has the majority's count."""
    counts = class_counts(y, num_classes)
    target = int(counts.max())
    extra = []
    for c in range(num_classes):
        idx = torch.nonzero(y.reshape(-1) == c).reshape(-1)
        if 0 < len(idx) < target:
            extra.append(idx[torch.randint(len(idx), (target - len(idx),), generator=generator).to(idx.device)])
    if not extra:
        return x, y
    more = torch.cat(extra)
    return torch.cat([x, x[more]]), torch.cat([y, y[more]])


def smote(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """SMOTE (Chawla et al. 2002): new minority samples x_i + u (x_nn - x_i), u ~ U(0, 1), with x_nn
    one of the k nearest neighbours of x_i within its class: every new sample lies on a segment
    between two real same-class samples."""
    return _interpolate(x, y, num_classes, generator, k,
                        lambda c, n, need, dev: torch.randint(n, (need,), generator=generator).to(dev))


def _interpolate(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator, k: int,
                 seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow every smaller class to the largest class's count by SMOTE's interpolation; `seeds(c, n_c,
    need, device)` gives the (need,) positions within class c of the samples each new one starts from."""
    counts = class_counts(y, num_classes)
    target = int(counts.max())
    new_x, new_y = [x], [y]
    flat = x.reshape(len(x), -1)
    for c in range(num_classes):
        idx = torch.nonzero(y.reshape(-1) == c).reshape(-1)
        need = target - len(idx)
        if need <= 0 or len(idx) < 2:
            continue
        base = seeds(c, len(idx), need, idx.device)
        members = flat[idx]
        d = torch.cdist(members, members)
        d.fill_diagonal_(float("inf"))
        kk = min(k, len(idx) - 1)
        neighbours = d.topk(kk, largest=False).indices  # (n_c, kk)
        pick = neighbours[base, torch.randint(kk, (need,), generator=generator).to(idx.device)]
        u = torch.rand(need, 1, generator=generator).to(flat)
        made = members[base] + u * (members[pick] - members[base])
        new_x.append(made.reshape(need, *x.shape[1:]))
        new_y.append(torch.full((need,), c, dtype=y.dtype, device=y.device).reshape(need, *y.shape[1:]))
    return torch.cat(new_x), torch.cat(new_y)


def adasyn_counts(x: torch.Tensor, y: torch.Tensor, c: int, need: int, k: int = 5) -> torch.Tensor:
    """How many synthetic samples ADASYN makes from each sample of class `c` (n_c,): with Delta_i
    the number of the k nearest neighbours of x_i (in the whole training split) that are of another
    class, r_i = Delta_i / k normalized to sum 1, and g_i = r_i * need rounded by largest remainder
    so that the g_i sum to `need` exactly. When no sample of `c` has a neighbour of another class,
    every sample makes the same share (plain SMOTE)."""
    flat = x.reshape(len(x), -1).double()
    labels = y.reshape(-1)
    idx = torch.nonzero(labels == c).reshape(-1)
    d = torch.cdist(flat[idx], flat)
    d[torch.arange(len(idx)), idx] = float("inf")  # not its own neighbour
    kk = min(k, len(x) - 1)
    nearest = d.topk(kk, largest=False).indices
    hard = (labels[nearest] != c).double().sum(1) / kk
    r = hard / hard.sum() if hard.sum() > 0 else torch.full((len(idx),), 1.0 / len(idx), dtype=torch.float64)
    exact = r * need
    counts = exact.floor().long()
    rest = need - int(counts.sum())
    if rest > 0:
        counts[torch.argsort(exact - counts, descending=True, stable=True)[:rest]] += 1
    return counts


def adasyn(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """ADASYN (He, Bai, Garcia & Li 2008): every smaller class grows to the largest class's count
    with SMOTE's interpolation x_i + u (x_nn - x_i), u ~ U(0, 1), x_nn one of the k nearest
    same-class neighbours of x_i, but sample i seeds `adasyn_counts` of them: more where the
    neighbourhood is of other classes (the samples hard to learn), none where it is all its own."""
    return _interpolate(x, y, num_classes, generator, k, lambda c, n, need, dev: torch.repeat_interleave(
        torch.arange(n, device=dev), adasyn_counts(x, y, c, need, k).to(dev)))


def undersample_hard(x: torch.Tensor, y: torch.Tensor, num_classes: int, ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep, from every larger class, the `ratio` x (smallest class count) samples closest to another
    class (the hard, informative ones near the boundary); drop the easy far-away majority."""
    counts = class_counts(y, num_classes)
    present = counts[counts > 0]
    keep_n = int(round(float(present.min()) * ratio))
    flat = x.reshape(len(x), -1)
    labels = y.reshape(-1)
    keep = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).reshape(-1)
        others = torch.nonzero(labels != c).reshape(-1)
        if len(idx) <= keep_n or len(others) == 0:
            keep.append(idx)
            continue
        margin = torch.cdist(flat[idx], flat[others]).min(1).values
        keep.append(idx[margin.argsort()[:keep_n]])
    kept = torch.sort(torch.cat(keep)).values
    return x[kept], y[kept]


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the precision-recall curve (average precision), for the positive class."""
    order = torch.argsort(scores, descending=True)
    hits = labels.reshape(-1)[order].double()
    positives = hits.sum()
    if positives == 0:
        return 0.0
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision * hits).sum() / positives)
