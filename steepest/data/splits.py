"""Deterministic train/validation/test splits sized by the data set's size.

The rule of thumb (Ng, Deep Learning Specialization, "Train / Dev / Test sets"): about 80/15/5 for 10k samples, 95/4/1 for a million and
99/0.9/0.1 for a hundred million. Below a few thousand samples a larger held-out share keeps the
estimates meaningful, so 70/15/15 is used up to 2,000 samples. Sizes between anchors are
interpolated in log10(n).
"""

from __future__ import annotations

import math

import numpy as np

_ANCHORS = [  # (log10 n, train, val, test)
    (math.log10(2_000), 0.70, 0.15, 0.15),
    (4.0, 0.80, 0.15, 0.05),
    (6.0, 0.95, 0.04, 0.01),
    (8.0, 0.99, 0.009, 0.001),
]


def default_fractions(n: int) -> tuple[float, float, float]:
    """Recommended (train, val, test) fractions for a data set of n samples."""
    t = math.log10(max(n, 1))
    if t <= _ANCHORS[0][0]:
        return _ANCHORS[0][1:]
    for (t0, *a), (t1, *b) in zip(_ANCHORS, _ANCHORS[1:]):
        if t <= t1:
            w = (t - t0) / (t1 - t0)
            val, test = (round(x + w * (y - x), 6) for x, y in zip(a[1:], b[1:]))
            return (1.0 - val - test, val, test)
    return _ANCHORS[-1][1:]


def _split_off(indices: np.ndarray, labels: np.ndarray | None, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (rest, taken) with `fraction` taken, per class when labels are given."""
    if fraction <= 0:
        return indices, indices[:0]
    groups = [indices] if labels is None else [indices[labels == c] for c in np.unique(labels)]
    taken, rest = [], []
    total_take = int(round(fraction * len(indices)))
    # Largest-remainder allocation so per-class counts add up to the overall count.
    quotas = np.array([fraction * len(g) for g in groups])
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts))[: max(0, total_take - counts.sum())]:
        counts[i] += 1
    for g, k in zip(groups, counts):
        g = g[rng.permutation(len(g))]
        taken.append(g[:k])
        rest.append(g[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(taken))


def split_indices(
    n: int,
    fractions: tuple[float, float, float],
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, val and test; stratified by `labels` when given. Same seed, same split."""
    rng = np.random.default_rng(seed)
    train_f, val_f, test_f = fractions
    everything = np.arange(n)
    if labels is not None and np.min(np.unique(labels, return_counts=True)[1]) < 2:
        labels = None  # a class with a single sample cannot be stratified
    rest, test = _split_off(everything, None if labels is None else labels, test_f, rng)
    remaining = max(train_f + val_f, 1e-12)
    train, val = _split_off(rest, None if labels is None else labels[rest], val_f / remaining, rng)
    return train, val, test
