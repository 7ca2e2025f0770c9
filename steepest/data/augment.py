"""Data augmentation as batch transforms on the device, drawn from an explicit generator and applied
to training batches only (the Trainer's engine calls it; evaluation never does).

Images (N, C, H, W): random crop with padding and small rotations as one affine resampling, horizontal
flips, brightness/contrast jitter, random erasing (Zhong et al. 2020). Text (token ids): word dropout
and synonym swaps from a table. Spectrograms (N, F, T): time and frequency masking (SpecAugment).
`expand(x, y, copies)` materializes the references' "x10 augmentation" as an enlarged training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _u(n: int, lo: float, hi: float, g: torch.Generator, device) -> Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=g)).to(device)


@dataclass(frozen=True)
class ImageAugment:
    crop_pad: int = 0
    hflip: bool = False
    rotate_degrees: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erase_prob: float = 0.0

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        if self.crop_pad or self.rotate_degrees:
            angle = _u(n, -self.rotate_degrees, self.rotate_degrees, g, dev) * math.pi / 180
            shift = torch.randint(-self.crop_pad, self.crop_pad + 1, (n, 2), generator=g).to(dev, x.dtype)
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0] * 2 / w], 1), torch.stack([sin, cos, shift[:, 1] * 2 / h], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear" if self.rotate_degrees else "nearest", padding_mode="zeros", align_corners=False)
        if self.hflip:
            flip = (torch.rand(n, generator=g) < 0.5).to(dev)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.brightness or self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            c = _u(n, 1 - self.contrast, 1 + self.contrast, g, dev).view(n, 1, 1, 1).to(x.dtype)
            b = _u(n, -self.brightness, self.brightness, g, dev).view(n, 1, 1, 1).to(x.dtype)
            x = (x - mean) * c + mean + b
        if self.erase_prob:
            x = random_erase(x, self.erase_prob, g)
        return x


def random_erase(x: Tensor, prob: float, g: torch.Generator, area: tuple[float, float] = (0.02, 0.2)) -> Tensor:
    """Zero a random rectangle (2-20% of the image) in each image with probability `prob`."""
    n, _, h, w = x.shape
    dev = x.device
    frac = _u(n, *area, g, dev)
    aspect = torch.exp(_u(n, math.log(0.3), math.log(3.3), g, dev))
    eh = (torch.sqrt(frac * h * w * aspect)).clamp(1, h).long()
    ew = (torch.sqrt(frac * h * w / aspect)).clamp(1, w).long()
    top = (torch.rand(n, generator=g).to(dev) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=g).to(dev) * (w - ew + 1)).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    box = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
    apply = (torch.rand(n, generator=g) < prob).to(dev)[:, None, None]
    return x.masked_fill((box & apply)[:, None], 0.0)


def word_dropout(ids: Tensor, p: float, g: torch.Generator, unk_id: int = 0) -> Tensor:
    """Replace each token by `unk_id` with probability p."""
    drop = (torch.rand(ids.shape, generator=g) < p).to(ids.device)
    return ids.masked_fill(drop, unk_id)


def synonym_swap(ids: Tensor, synonyms: dict[int, list[int]], p: float, g: torch.Generator) -> Tensor:
    """Swap tokens that have synonyms for a random one of them with probability p."""
    out = ids.clone()
    flat = out.reshape(-1)
    for pos in range(flat.numel()):
        options = synonyms.get(int(flat[pos]))
        if options and float(torch.rand((), generator=g)) < p:
            flat[pos] = options[int(torch.randint(len(options), (), generator=g))]
    return out


def spec_mask(spec: Tensor, g: torch.Generator, freq_width: int = 8, time_width: int = 20, masks: int = 1) -> Tensor:
    """SpecAugment (Park et al. 2019): zero `masks` random frequency bands and time spans per example (N, F, T)."""
    n, f, t = spec.shape[-3:] if spec.dim() == 3 else (spec.shape[0], *spec.shape[-2:])
    out = spec.clone()
    for i in range(n):
        for _ in range(masks):
            fw = int(torch.randint(0, freq_width + 1, (), generator=g))
            f0 = int(torch.randint(0, max(1, f - fw + 1), (), generator=g))
            tw = int(torch.randint(0, time_width + 1, (), generator=g))
            t0 = int(torch.randint(0, max(1, t - tw + 1), (), generator=g))
            out[i, ..., f0 : f0 + fw, :] = 0
            out[i, ..., :, t0 : t0 + tw] = 0
    return out


def expand(x: Tensor, y: Tensor, augment: ImageAugment, copies: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """The original training set plus `copies` augmented copies of it ("x10 augmentation": copies=9)."""
    xs, ys = [x], [y]
    for _ in range(copies):
        xs.append(augment(x, g))
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)
