"""Data augmentation as batch transforms on the device, drawn from an explicit generator and applied
to training batches only (the Trainer's engine calls it; evaluation never does).

Images (N, C, H, W): random crop with padding and small rotations as one affine resampling, horizontal
flips, brightness/contrast jitter, random erasing (Zhong et al. 2020). Text (token ids): word dropout
and synonym swaps from a table. Spectrograms (N, F, T) or (N, C, F, T): time and frequency masking
(SpecAugment, Park et al. 2019). `expand(x, y, augment, copies, g)` materializes offline
augmentation, "x10" (copies=9) as an enlarged training set.

Recipe form (`data.augment`); the keys pick the kind:

    data: {augment: {crop_pad: 2, hflip: true, rotate_degrees: 10, brightness: 0.1, contrast: 0.1, erase_prob: 0.25}}
    data: {augment: {word_dropout: 0.1, synonyms: {12: [40, 41]}, synonym_prob: 0.2}}
    data: {augment: {freq_mask: 8, time_mask: 20, masks: 2, time_warp: 5}}
    data: {augment: {crop_pad: 2, copies: 9}}      # x10: 9 augmented copies drawn once, no per-batch draws

Random numbers come from a CPU generator (so a run is reproducible on any device) and the masks are
built with tensor ops on the data's device: no per-sample Python loop, no host sync (the draws of the
image augmentation go to the device with `non_blocking=True`: a plain copy to CUDA waits for the
stream, one host sync per training step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor


def _u(shape, lo: float, hi: float, g: torch.Generator, device) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else shape
    return (lo + (hi - lo) * torch.rand(shape, generator=g)).to(device, non_blocking=True)


@dataclass(frozen=True)
class ImageAugment:
    """Images (N, C, H, W). `fill` is the value of pixels shifted or rotated in from outside the image
    (a float or one per channel); steepest sets it to the normalized value of a raw 0 (black)."""

    crop_pad: int = 0
    hflip: bool = False
    rotate_degrees: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erase_prob: float = 0.0
    fill: float | tuple[float, ...] = 0.0

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"image augmentation needs images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        dev = x.device
        if self.crop_pad or self.rotate_degrees:
            angle = _u(n, -self.rotate_degrees, self.rotate_degrees, g, dev) * math.pi / 180
            shift = torch.randint(-self.crop_pad, self.crop_pad + 1, (n, 2), generator=g).to(dev, x.dtype, non_blocking=True)
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0] * 2 / w], 1), torch.stack([sin, cos, shift[:, 1] * 2 / h], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), [n, c, h, w], align_corners=False)
            mode = "bilinear" if self.rotate_degrees else "nearest"  # a pure shift moves pixels exactly
            fill = torch.as_tensor(self.fill, dtype=x.dtype).reshape(-1)
            if not bool((fill == 0).all()):  # resample a ones channel too: 1 - it is the weight of outside pixels
                x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            x = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
            if x.shape[1] > c:
                x = x[:, :c] + (1 - x[:, c:]) * fill.to(dev, non_blocking=True).reshape(1, -1, 1, 1)
        if self.hflip:
            flip = (torch.rand(n, generator=g) < 0.5).to(dev, non_blocking=True)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.brightness or self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            scale = _u(n, 1 - self.contrast, 1 + self.contrast, g, dev).view(n, 1, 1, 1).to(x.dtype)
            shift_b = _u(n, -self.brightness, self.brightness, g, dev).view(n, 1, 1, 1).to(x.dtype)
            x = (x - mean) * scale + mean + shift_b
        if self.erase_prob:
            x = random_erase(x, self.erase_prob, g)
        return x


def random_erase(x: Tensor, prob: float, g: torch.Generator, area: tuple[float, float] = (0.02, 0.2), value: float = 0.0) -> Tensor:
    """Set a random rectangle (2-20% of the image, aspect 0.3-3.3) to `value` in each image with
    probability `prob` (0 = the training mean once inputs are standardized)."""
    n, _, h, w = x.shape
    dev = x.device
    frac = _u(n, *area, g, dev)
    aspect = torch.exp(_u(n, math.log(0.3), math.log(3.3), g, dev))
    eh = torch.sqrt(frac * h * w * aspect).clamp(1, h).long()
    ew = torch.sqrt(frac * h * w / aspect).clamp(1, w).long()
    top = (torch.rand(n, generator=g).to(dev, non_blocking=True) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=g).to(dev, non_blocking=True) * (w - ew + 1)).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    box = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
    apply = (torch.rand(n, generator=g) < prob).to(dev, non_blocking=True)[:, None, None]
    return x.masked_fill((box & apply)[:, None], value)


def word_dropout(ids: Tensor, p: float, g: torch.Generator, unk_id: int = 0) -> Tensor:
    """Replace each token by `unk_id` with probability p."""
    drop = (torch.rand(ids.shape, generator=g) < p).to(ids.device)
    return ids.masked_fill(drop, unk_id)


def synonym_table(synonyms: dict[int, Sequence[int]]) -> tuple[Tensor, Tensor]:
    """A dense lookup of a synonym dict: options (V, M) padded with -1 and counts (V,), V = max key + 1."""
    size = max((int(k) for k in synonyms), default=-1) + 1
    width = max((len(v) for v in synonyms.values()), default=0)
    options = torch.full((size, max(width, 1)), -1, dtype=torch.long)
    counts = torch.zeros(size, dtype=torch.long)
    for key, values in synonyms.items():
        options[int(key), : len(values)] = torch.as_tensor(list(values), dtype=torch.long)
        counts[int(key)] = len(values)
    return options, counts


def synonym_swap(ids: Tensor, synonyms: dict[int, Sequence[int]] | tuple[Tensor, Tensor], p: float, g: torch.Generator) -> Tensor:
    """Swap each token that has synonyms for a uniformly drawn one of them with probability p.
    `synonyms` is {token: [alternatives]} or the (options, counts) of `synonym_table`."""
    options, counts = synonym_table(synonyms) if isinstance(synonyms, dict) else synonyms
    options, counts = options.to(ids.device), counts.to(ids.device)
    tokens = ids.long()
    known = (tokens >= 0) & (tokens < len(counts))
    row = torch.where(known, tokens, 0)
    n_opts = torch.where(known, counts[row], 0)
    swap = (torch.rand(ids.shape, generator=g).to(ids.device) < p) & (n_opts > 0)
    pick = (torch.rand(ids.shape, generator=g).to(ids.device) * n_opts).long().clamp_max(options.shape[1] - 1)
    return torch.where(swap, options[row, pick].to(ids.dtype), ids)


def spec_mask(spec: Tensor, g: torch.Generator, freq_width: int = 8, time_width: int = 20, masks: int = 1, value: float = 0.0) -> Tensor:
    """SpecAugment (Park et al. 2019): per example, `masks` frequency bands of width U{0..freq_width}
    and `masks` time spans of width U{0..time_width} set to `value`. spec: (N, F, T) or (N, C, F, T)."""
    n, f, t = spec.shape[0], spec.shape[-2], spec.shape[-1]
    dev = spec.device
    fi = torch.arange(f, device=dev)[None, :, None]
    ti = torch.arange(t, device=dev)[None, None, :]
    hit = torch.zeros(n, f, t, dtype=torch.bool, device=dev)
    for _ in range(masks):
        fw = torch.randint(0, freq_width + 1, (n,), generator=g).clamp_max(f)
        f0 = (torch.rand(n, generator=g) * (f - fw + 1)).long()
        tw = torch.randint(0, time_width + 1, (n,), generator=g).clamp_max(t)
        t0 = (torch.rand(n, generator=g) * (t - tw + 1)).long()
        f0, fw, t0, tw = (v.to(dev)[:, None, None] for v in (f0, fw, t0, tw))
        hit |= ((fi >= f0) & (fi < f0 + fw)) | ((ti >= t0) & (ti < t0 + tw))
    if spec.dim() == 4:
        hit = hit[:, None]
    return spec.masked_fill(hit, value)


def time_warp(spec: Tensor, g: torch.Generator, width: int) -> Tensor:
    """SpecAugment's time warping (Park et al. 2019), along the time axis: per example a point w0 ~
    U[width, T - width) moves to w0 + w, w ~ U[-width, width], the two sides stretched or squeezed
    linearly (the first and last frames stay) and read back with linear interpolation. The paper
    warps with a sparse image warp whose only moving control points lie on one time line, which
    this piecewise-linear map of the time axis reproduces up to the spline. spec: (N, F, T) or
    (N, C, F, T); examples with T <= 2 width are left as they are."""
    n, t = spec.shape[0], spec.shape[-1]
    if width <= 0 or t <= 2 * width:
        return spec
    dev = spec.device
    w0 = torch.randint(width, t - width, (n,), generator=g).double()
    w = torch.randint(-width, width + 1, (n,), generator=g).double()
    dst = w0 + w  # where w0 lands
    j = torch.arange(t, dtype=torch.float64)[None, :]
    src = torch.where(j < dst[:, None], j * w0[:, None] / dst[:, None],
                      w0[:, None] + (j - dst[:, None]) * (t - 1 - w0[:, None]) / (t - 1 - dst[:, None]))
    src = src.clamp(0, t - 1)
    lo = src.floor().long().clamp_max(t - 1)
    hi = (lo + 1).clamp_max(t - 1)
    frac = (src - lo).to(spec.dtype).to(dev)
    shape = (n,) + (1,) * (spec.dim() - 2) + (t,)
    lo, hi, frac = lo.to(dev).reshape(shape).expand_as(spec), hi.to(dev).reshape(shape).expand_as(spec), frac.reshape(shape)
    return torch.gather(spec, -1, lo) * (1 - frac) + torch.gather(spec, -1, hi) * frac


@dataclass(frozen=True)
class TokenAugment:
    """Token ids (N, T): word dropout to `unk_id`, then synonym swaps from a table."""

    word_dropout: float = 0.0
    unk_id: int = 0
    synonyms: dict = field(default_factory=dict)
    synonym_prob: float = 0.0

    def __call__(self, ids: Tensor, g: torch.Generator) -> Tensor:
        if self.synonyms and self.synonym_prob:
            ids = synonym_swap(ids, {int(k): list(v) for k, v in self.synonyms.items()}, self.synonym_prob, g)
        if self.word_dropout:
            ids = word_dropout(ids, self.word_dropout, g, self.unk_id)
        return ids


@dataclass(frozen=True)
class SpecAugment:
    """Spectrograms (N, F, T) or (N, C, F, T): time warping by up to `time_warp` frames, then `masks`
    frequency and time masks per example (the order of the SpecAugment paper)."""

    freq_mask: int = 0
    time_mask: int = 0
    masks: int = 1
    time_warp: int = 0

    def __call__(self, spec: Tensor, g: torch.Generator) -> Tensor:
        if spec.dim() not in (3, 4):
            raise ValueError(f"spectrogram masking needs (N, F, T) or (N, C, F, T), got shape {tuple(spec.shape)}")
        if self.time_warp:
            spec = time_warp(spec, g, self.time_warp)
        return spec_mask(spec, g, self.freq_mask, self.time_mask, self.masks)


KINDS = (ImageAugment, TokenAugment, SpecAugment)


def from_config(options: dict, fill: float | tuple[float, ...] = 0.0) -> tuple[ImageAugment | TokenAugment | SpecAugment, int]:
    """`data.augment` -> (augmentation, copies). The keys decide the kind; mixing kinds is an error."""
    options = dict(options)
    copies = int(options.pop("copies", 0))
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    for kind in KINDS:
        names = {f.name for f in fields(kind)} - {"fill"}
        if options and set(options) <= names:
            if kind is ImageAugment:
                options["fill"] = fill
            return kind(**options), copies
    valid = sorted({f.name for k in KINDS for f in fields(k)} - {"fill"} | {"copies"})
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    raise ValueError("keys of different kinds (image / text / spectrogram) cannot be mixed" if options else "no augmentation keys given")


def expand(x: Tensor, y: Tensor, augment, copies: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """The original training set plus `copies` augmented copies of it ("x10 augmentation": copies=9)."""
    xs, ys = [x], [y]
    for _ in range(copies):
        xs.append(augment(x, g))
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def black_fill(x_norm: dict | None, channels: int) -> float | tuple[float, ...]:
    """The standardized value of a raw 0 pixel, per channel (what padding shows: black, not grey)."""
    if not x_norm:
        return 0.0
    mean, std = x_norm["mean"], x_norm["std"]
    if len(mean) == 1:
        return -mean[0] / std[0]
    if len(mean) == channels:
        return tuple(-m / s for m, s in zip(mean, std))
    return 0.0  # per-pixel statistics: no single fill value


def for_data(options: dict, info) -> tuple[ImageAugment | TokenAugment | SpecAugment, int]:
    """`from_config` with the image fill taken from the data's training normalization."""
    channels = info.input_shape[0] if len(info.input_shape) == 3 else 1
    augment, copies = from_config(options, black_fill(info.x_norm, channels))
    if isinstance(augment, ImageAugment) and len(info.input_shape) != 3:
        raise ValueError(f"image augmentation needs image inputs (C, H, W); the data has shape {tuple(info.input_shape)}")
    return augment, copies


def expand_bundle(data, augment, copies: int, seed: int):
    """A DataBundle whose training split holds the original plus `copies` augmented copies (drawn once
    from a generator seeded by `seed`, so a resumed run rebuilds the same set); val/test untouched."""
    g = torch.Generator().manual_seed(seed + 15485863)
    x, y = expand(data.train.x, data.train.y, augment, copies, g)
    weights = None if data.sample_weights is None else data.sample_weights.repeat(copies + 1)  # each copy keeps its weight
    return replace(data, train=type(data.train)(x, y), sample_weights=weights,
                   info=replace(data.info, sizes={**data.info.sizes, "train": len(x)}))
