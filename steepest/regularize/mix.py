"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) as batch transforms with an explicit generator.

    x, soft_y = Mixup(alpha=0.2, num_classes=10)(x, y, generator)

mixup:  lam ~ Beta(alpha, alpha);  x = lam x + (1 - lam) x[perm];  y = lam y + (1 - lam) y[perm]
CutMix: a box of area (1 - lam) from x[perm] is pasted into x; lam is then recomputed from the box
        after clipping to the image, so the label weights equal the pixel shares exactly.
Label smoothing is folded into the soft targets. All randomness comes from `generator`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steepest.losses.functional import soft_targets


def _beta(alpha: float, generator: torch.Generator) -> float:
    """lam ~ Beta(alpha, alpha) from two Gamma draws made with `generator` (torch has no seeded Beta)."""
    g1 = torch._standard_gamma(torch.full((2,), alpha, dtype=torch.float64), generator=generator)
    return float(g1[0] / g1.sum())


class Mixup:
    def __init__(self, alpha: float = 0.2, num_classes: int = 10, label_smoothing: float = 0.0, prob: float = 1.0):
        if alpha <= 0 or not 0 <= prob <= 1:
            raise ValueError(f"mixup needs alpha > 0 and prob in [0, 1], got alpha={alpha}, prob={prob}")
        self.alpha, self.num_classes, self.label_smoothing, self.prob = alpha, num_classes, label_smoothing, prob
        self.last_lam = 1.0

    def _targets(self, y: Tensor, dtype) -> Tensor:
        return soft_targets(y, self.num_classes, self.label_smoothing).to(dtype)

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        q = self._targets(y, x.dtype)
        if float(torch.rand((), generator=generator)) >= self.prob:
            self.last_lam = 1.0
            return x, q
        lam = _beta(self.alpha, generator)
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        self.last_lam = lam
        return lam * x + (1 - lam) * x[perm], lam * q + (1 - lam) * q[perm]


class CutMix(Mixup):
    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        q = self._targets(y, x.dtype)
        if x.dim() < 3 or float(torch.rand((), generator=generator)) >= self.prob:
            self.last_lam = 1.0
            return x, q
        lam = _beta(self.alpha, generator)
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        h, w = x.shape[-2], x.shape[-1]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(h, (), generator=generator)), int(torch.randint(w, (), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the clipped box's true share
        self.last_lam = lam
        return out, lam * q + (1 - lam) * q[perm]


class MixupCutMix:
    """Per batch, CutMix with probability `switch_prob`, otherwise mixup."""

    def __init__(self, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0, switch_prob: float = 0.5, num_classes: int = 10,
                 label_smoothing: float = 0.0):
        self.mixup = Mixup(mixup_alpha, num_classes, label_smoothing)
        self.cutmix = CutMix(cutmix_alpha, num_classes, label_smoothing)
        self.switch_prob = switch_prob

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        use_cutmix = float(torch.rand((), generator=generator)) < self.switch_prob
        return (self.cutmix if use_cutmix else self.mixup)(x, y, generator)
