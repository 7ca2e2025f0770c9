"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) as batch transforms with an explicit generator.

    x, soft_y = Mixup(alpha=0.2, num_classes=10)(x, y, generator)

mixup:  lam ~ Beta(alpha, alpha);   x' = lam x + (1 - lam) x[perm];   q' = lam q + (1 - lam) q[perm]
CutMix: a box of about (1 - lam) of the image, taken from x[perm], is pasted into x; as in the
        references (and timm), lam is then recomputed from the box *after clipping* to the image,
        lam = 1 - box_area / (H W), so the label weights equal the pixel shares exactly.

q = smooth_targets(y, K, label_smoothing): label smoothing is folded into the soft targets, so the
loss is plain soft-target cross-entropy. One lam and one permutation per batch.

Randomness comes only from `generator` (never the global RNG), drawn on `generator.device`: give a
CUDA generator for CUDA data and the whole transform runs on the device with no host sync (the
random draws of a CPU generator are moved to the data's device). Each call draws, in this order:
perm, lam (mixup), lam and box centre (CutMix), the mixup/CutMix switch, the `prob` coin -- the
last three only where configured -- whatever the outcome, so a run replays exactly from the
generator's state (which the trainer checkpoints).
"""

from __future__ import annotations

import torch
from torch import Tensor

from steepest.regularize.smoothing import smooth_targets


def sample_beta(alpha: float, generator: torch.Generator) -> Tensor:
    """lam ~ Beta(alpha, alpha): a 0-dim float32 tensor on `generator.device`.

    Beta(a, a) = G1 / (G1 + G2) with G ~ Gamma(a, 1). For small a a Gamma draw underflows to 0 in
    float32 (P[G < 1e-38] is about 0.4 at a = 0.01, and 0/0 = nan), so it is computed in log space
    with Gamma(a) = Gamma(a + 1) U^(1/a), U ~ U(0, 1):  lam = sigmoid(log G1 - log G2).

    >>> 0 <= float(sample_beta(0.2, torch.Generator().manual_seed(0))) <= 1
    True
    """
    dev = generator.device
    g = torch._standard_gamma(torch.full((2,), alpha + 1.0, device=dev), generator=generator)
    u = torch.rand(2, generator=generator, device=dev)
    log_g = g.log() + u.log() / alpha
    return torch.sigmoid(log_g[0] - log_g[1])


def cutmix_box(height: int, width: int, lam: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The CutMix box for a target share `lam`: an (H, W) bool mask (True inside) and the recomputed
    lam = 1 - area / (H W) of the box after clipping to the image (both on `generator.device`).

    cut = sqrt(1 - lam); the box is (int(H cut), int(W cut)) centred at a uniform pixel, clipped.
    """
    dev = generator.device
    cut = torch.sqrt(1 - lam)
    ch, cw = (height * cut).long(), (width * cut).long()  # int(): truncation, as the CutMix authors' code
    cy = torch.randint(height, (), generator=generator, device=dev)
    cx = torch.randint(width, (), generator=generator, device=dev)
    y0, y1 = (cy - ch // 2).clamp(0, height), (cy + ch // 2).clamp(0, height)
    x0, x1 = (cx - cw // 2).clamp(0, width), (cx + cw // 2).clamp(0, width)
    rows, cols = torch.arange(height, device=dev), torch.arange(width, device=dev)
    box = ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]
    return box, 1 - ((y1 - y0) * (x1 - x0)).float() / (height * width)


class BatchMix:
    """mixup and/or CutMix on a batch; `Mixup`, `CutMix` and `MixupCutMix` are its three settings.

    mixup_alpha / cutmix_alpha: Beta(alpha, alpha) parameters (None turns that method off);
    switch_prob: with both on, the chance that a batch gets CutMix instead of mixup;
    prob: the chance that a batch is mixed at all (otherwise x is returned with its (smoothed) targets).
    After a call, `last_lam` (0-dim) and `last_index` (the permutation) describe what was done.
    """

    def __init__(self, num_classes: int, mixup_alpha: float | None = None, cutmix_alpha: float | None = None,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0, prob: float = 1.0):
        for name, a in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if a is not None and not a > 0:
                raise ValueError(f"{name} must be > 0, got {a} (leave batch_transform out to turn mixing off)")
        if mixup_alpha is None and cutmix_alpha is None:
            raise ValueError("give mixup_alpha, cutmix_alpha or both")
        for name, v in (("switch_prob", switch_prob), ("prob", prob)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes, self.label_smoothing = int(num_classes), float(label_smoothing)
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.prob = float(switch_prob), float(prob)
        self.last_lam: Tensor | None = None
        self.last_index: Tensor | None = None

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if not x.is_floating_point():
            raise TypeError(f"mixing needs floating-point inputs, got {x.dtype} (convert images to float first)")
        if self.cutmix_alpha is not None and x.dim() < 3:
            raise ValueError(f"CutMix needs images (N, C, H, W); got inputs of shape {tuple(x.shape)} (use mixup)")
        q = smooth_targets(y, self.num_classes, self.label_smoothing).to(x.device)
        dev, one = generator.device, torch.ones((), device=generator.device)
        perm = torch.randperm(len(x), generator=generator, device=dev)
        lam_mix = sample_beta(self.mixup_alpha, generator) if self.mixup_alpha is not None else None
        box = lam_cut = None
        if self.cutmix_alpha is not None:
            box, lam_cut = cutmix_box(x.shape[-2], x.shape[-1], sample_beta(self.cutmix_alpha, generator), generator)
        if lam_mix is not None and box is not None:  # both: switch per batch, on the device
            use_cut = torch.rand((), generator=generator, device=dev) < self.switch_prob
            lam, box, lam_mix = torch.where(use_cut, lam_cut, lam_mix), box & use_cut, torch.where(use_cut, one, lam_mix)
        else:
            lam = lam_mix if lam_mix is not None else lam_cut
        if self.prob < 1:
            apply = torch.rand((), generator=generator, device=dev) < self.prob
            lam = torch.where(apply, lam, one)
            lam_mix = torch.where(apply, lam_mix, one) if lam_mix is not None else None
            box = box & apply if box is not None else None
        perm, lam = perm.to(x.device), lam.to(x.device)
        x_other = x[perm]
        out = x
        if lam_mix is not None:
            w = lam_mix.to(x.device, x.dtype)
            out = w * x + (1 - w) * x_other
        if box is not None:
            out = torch.where(box.to(x.device), x_other, out)
        self.last_lam, self.last_index = lam, perm
        return out, lam * q + (1 - lam) * q[perm]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}, switch_prob={self.switch_prob}, "
                f"label_smoothing={self.label_smoothing}, prob={self.prob})")


class Mixup(BatchMix):
    """mixup: x' = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha) (Zhang et al. 2018).

    >>> g = torch.Generator().manual_seed(0)
    >>> x, q = Mixup(0.2, num_classes=3)(torch.rand(4, 5), torch.tensor([0, 1, 2, 0]), g)
    >>> q.shape, bool(torch.allclose(q.sum(1), torch.ones(4)))
    (torch.Size([4, 3]), True)
    """

    def __init__(self, alpha: float = 0.2, num_classes: int = 10, label_smoothing: float = 0.0, prob: float = 1.0):
        super().__init__(num_classes, mixup_alpha=alpha, label_smoothing=label_smoothing, prob=prob)


class CutMix(BatchMix):
    """CutMix: paste a box of x[perm] into x; lam = the share of pixels kept (Yun et al. 2019).

    >>> g = torch.Generator().manual_seed(0)
    >>> x, q = CutMix(1.0, num_classes=3)(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), g)
    >>> x.shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(self, alpha: float = 1.0, num_classes: int = 10, label_smoothing: float = 0.0, prob: float = 1.0):
        super().__init__(num_classes, cutmix_alpha=alpha, label_smoothing=label_smoothing, prob=prob)


class MixupCutMix(BatchMix):
    """Per batch, CutMix with probability `switch_prob`, otherwise mixup (timm's default pairing)."""

    def __init__(self, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 num_classes: int = 10, label_smoothing: float = 0.0, prob: float = 1.0):
        super().__init__(num_classes, mixup_alpha, cutmix_alpha, switch_prob, label_smoothing, prob)
