"""Per-sample image transforms for DataLoader workers, drawn afresh every epoch and reproducible.

Each transform is a small frozen dataclass called as `transform(image, generator) -> image` on one
image, a float tensor (C, H, W) with values in [0, 1] (C = 1 grey or 3 RGB) until `Normalize`
standardizes it. Every random draw comes from the `generator` argument, never from global RNG
state; `sample_generator(seed, epoch, index)` gives each (seed, epoch, sample index) its own
stream, so a run draws the same augmentation for sample i in epoch e whatever the number of
DataLoader workers or the order they load in, and a different one the next epoch. This is the
per-sample counterpart of `steepest.data.augment`, which transforms whole batches on the device.

    pipeline = from_config({"image_size": 64, "hflip": 0.5, "color_jitter": {"brightness": 0.2}}, train=True)
    image = pipeline(load_image(path, channels=3), sample_generator(seed, epoch, index))

The image operations are written with Pillow (decoding, EXIF orientation) and torch tensor ops
(everything else), not torchvision: torchvision does not import beside the pinned CPU build of
torch 2.13 in steepest's environment (PyPI's wheel fails with "operator torchvision::nms does not
exist"). The algorithms and default arguments follow torchvision's `transforms.v2` where it has
the operation, so recipes carry over; the differences are stated where they occur.

Ops: `RandomResizedCrop` (Szegedy et al. 2015, "Going deeper with convolutions"),
`RandomHorizontalFlip`, `RandomRotation`, `ColorJitter` (brightness, contrast, saturation, and hue
rotated in HSV space; Howard 2013 / Krizhevsky et al. 2012 for photometric jitter),
`RandomErasing` (Zhong et al. 2020), `Resize`, `CenterCrop`, `Normalize`, `Compose`; `from_config`
builds a pipeline from recipe keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from steepest.errors import DataError, did_you_mean

# ITU-R BT.601 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale use.
LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------
# Random streams


_MT_WORDS = 624  # the Mersenne Twister's state: 624 32-bit words
_MT_OFFSET = 24  # byte offset of those words (one uint64 each) in a CPU generator's state tensor


def _mt_layout_known() -> bool:
    """Whether torch's CPU generator state has the layout `sample_generator` writes: seed (uint64),
    left (int32), seeded (int32), next (uint64), then 624 words as uint64 (checked, not assumed)."""
    seed = 0x1234_5678_9ABC_DEF0
    raw = torch.Generator().manual_seed(seed).get_state().numpy()
    if raw.size < _MT_OFFSET + 8 * _MT_WORDS:
        return False
    words = raw[_MT_OFFSET : _MT_OFFSET + 8 * _MT_WORDS].view(np.uint64)
    s0 = seed & 0xFFFF_FFFF
    s1 = (1812433253 * (s0 ^ (s0 >> 30)) + 1) & 0xFFFF_FFFF  # mt19937's initialization recurrence
    return (int(raw[:8].view(np.uint64)[0]) == seed and raw[8:16].view(np.int32).tolist() == [1, 1]
            and int(words[0]) == s0 and int(words[1]) == s1)


_FULL_STATE = _mt_layout_known()


_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)
_STEPS = np.arange(1, _MT_WORDS + 1, dtype=np.uint64) * _GOLDEN  # splitmix64's Weyl sequence, precomputed
_TEMPLATE: np.ndarray | None = None  # a CPU generator's state bytes, the words overwritten per sample


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function (Steele, Lea & Flood 2014), elementwise on uint64 (wrapping)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58_476D_1CE4_E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D0_49BB_1331_11EB)
    return x ^ (x >> np.uint64(31))


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's output function on a Python int (64-bit wrapping)."""
    x = ((x ^ (x >> 30)) * 0xBF58_476D_1CE4_E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D0_49BB_1331_11EB) & _MASK64
    return x ^ (x >> 31)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU torch.Generator for one sample in one epoch: the same (seed, epoch, index) gives the
    same stream, a change in any of the three a different one.

    The three numbers (each in [0, 2**64)) are hashed into a 64-bit key by a chain of splitmix64
    mixes (Steele, Lea & Flood 2014; each step a bijection of 64 bits with full avalanche), and
    splitmix64 expands the key into the 624 32-bit words of the generator's whole Mersenne Twister
    state (the usual way to seed a large state from a small key). torch's `manual_seed` keeps only 32 bits of its seed, so distinct
    triples would share streams after ~2**16 samples by the birthday bound; with 64-bit keys they
    do not. `initial_seed()` returns the key. Should a future torch change its state layout, this
    falls back to `manual_seed` with 64 hashed bits. About 20 us per sample; `sample_generators`
    makes a micro-batch's generators at once for a few us each (the same streams).

    >>> a = torch.rand(3, generator=sample_generator(0, 1, 2))
    >>> torch.equal(a, torch.rand(3, generator=sample_generator(0, 1, 2)))
    True
    >>> torch.equal(a, torch.rand(3, generator=sample_generator(0, 2, 2)))
    False
    """
    return sample_generators(seed, epoch, [index])[0]


def _check_key_part(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**64:
        raise ValueError(f"sample_generator: {name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def sample_generators(seed: int, epoch: int, indices: Sequence[int]) -> list[torch.Generator]:
    """`[sample_generator(seed, epoch, i) for i in indices]`, computed together: the splitmix64
    expansion of all the keys is one array operation of shape (len(indices), 624), so a micro-batch
    of 128 samples costs a few microseconds per sample instead of ~20 (a per-sample cost of the
    image pipeline). Errors: ValueError for a number outside [0, 2**64) or not an integer."""
    global _TEMPLATE
    prefix = 0
    for name, value in (("seed", seed), ("epoch", epoch)):  # a chain of splitmix64 mixes: bijective per step, avalanche in every bit
        prefix = _mix64((prefix ^ _check_key_part(name, value)) + 0x9E37_79B9_7F4A_7C15 & _MASK64)
    index = np.array([_check_key_part("index", i) for i in indices], dtype=np.uint64)
    keys = _splitmix64((np.uint64(prefix) ^ index) + _GOLDEN)  # the chain's last step, for every index at once
    generators = [torch.Generator() for _ in range(len(index))]
    if not _FULL_STATE:
        return [g.manual_seed(int(key)) for g, key in zip(generators, keys)]
    words = _splitmix64(keys[:, None] + _STEPS) & np.uint64(0xFFFF_FFFF)  # (B, 624); array ops wrap silently
    words[~words.any(axis=1), 0] = 0x8000_0000  # an all-zero state is MT's one degenerate case (as numpy guards)
    if _TEMPLATE is None:
        _TEMPLATE = torch.Generator().manual_seed(1).get_state().numpy().copy()  # left = 1: the first draw regenerates
    raw = np.repeat(_TEMPLATE[None, :], len(index), axis=0)
    raw[:, :8] = keys.view(np.uint8).reshape(-1, 8)  # the seed field: what initial_seed() reports
    raw[:, _MT_OFFSET : _MT_OFFSET + 8 * _MT_WORDS] = words.view(np.uint8).reshape(len(index), -1)
    for g, row in zip(generators, raw):
        # one tensor per row, each starting at its own row: set_state on a view with a storage
        # offset (a row of one (B, n) tensor) crashes torch 2.13's CPU generator
        g.set_state(torch.from_numpy(row))
    return generators


def _need(generator: torch.Generator | None, name: str) -> torch.Generator:
    if generator is None:
        raise ValueError(f"{name} draws random numbers: pass a torch.Generator (sample_generator(seed, epoch, index))")
    return generator


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi)."""
    return int(torch.randint(lo, hi, (1,), generator=g))


# ---------------------------------------------------------------------------------------------
# Checking arguments


def _image(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} needs one float image tensor (C, H, W), got {shape}")
    return x


def _size(size, name: str) -> tuple[int, int]:
    """An int s -> (s, s); a pair (h, w) -> itself; both positive."""
    pair = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair)):
        raise ValueError(f"{name} must be a positive integer or a pair [height, width] of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def _range(value, name: str, lo: float = -math.inf, hi: float = math.inf, positive: bool = False) -> tuple[float, float]:
    """A pair (a, b) with lo <= a <= b <= hi (and a > 0 when `positive`)."""
    ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if ok:
        a, b = float(value[0]), float(value[1])
        ok = lo <= a <= b <= hi and (a > 0 or not positive)
    if not ok:
        bounds = f" within [{lo:g}, {hi:g}]" if math.isfinite(lo) or math.isfinite(hi) else ""
        raise ValueError(f"{name} must be a pair [low, high] with low <= high{bounds}{' and low > 0' if positive else ''}, got {value!r}")
    return a, b


def _number(value, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _fill(value, name: str) -> float | tuple[float, ...]:
    """A float, or one float per channel."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if not value:
            raise ValueError(f"{name} must be a number or one number per channel, got {value!r}")
        return tuple(_number(v, name) for v in value)
    return _number(value, name)


def _per_channel(value, x: Tensor, name: str) -> Tensor:
    """`value` (a float or one per channel) as a (C, 1, 1) tensor like x."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1)
    if v.numel() not in (1, x.shape[0]):
        raise ValueError(f"{name} has {v.numel()} values for an image with {x.shape[0]} channels")
    return v.expand(x.shape[0]).reshape(-1, 1, 1)


# ---------------------------------------------------------------------------------------------
# Loading


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError as e:  # pragma: no cover - Pillow is installed wherever images are read
        raise ImportError("reading image files needs Pillow: pip install pillow") from e
    return Image, ImageOps


def to_tensor(image) -> Tensor:
    """A PIL image -> a float32 tensor (C, H, W) in [0, 1].

    Modes "L" -> 1 channel, "LA" -> 2, "RGB" -> 3, "RGBA" -> 4 (8-bit values / 255); "1" (bilevel)
    -> 1; 16-bit grey ("I;16", "I") -> 1 channel, values / 65535; "F" -> 1 channel, clamped to
    [0, 1]; any other mode (palette "P", "CMYK", "YCbCr", ...) is converted to "RGB" first.
    """
    mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image, dtype=np.float64) / 65535.0
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
    else:  # 8-bit: x / 255 in float32 is within [0, 1] exactly, no clamp needed
        if mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGB")
        array = np.asarray(image, dtype=np.float32)  # a new, writable array
        array /= np.float32(255.0)
        return torch.from_numpy(array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1)))
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()
    return t.clamp_(0.0, 1.0)


# Where Pillow's `getexif` finds an orientation: EXIF bytes (JPEG, PNG eXIf, WebP), ImageMagick's PNG
# text chunk, TIFF tags, and XMP's tiff:Orientation. An image with none of them has orientation 1.
_ORIENTATION_INFO = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


# EXIF orientation -> the Pillow transpose that shows the image upright (ImageOps.exif_transpose's table)
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(image) -> int:
    """The EXIF orientation tag (1: upright) of an opened Pillow image (a TIFF's before `load`, which
    closes the file its tags are read from). Parsing EXIF costs about a quarter of decoding a small
    PNG, so an image that carries none of the places it can live in is upright without parsing."""
    if not hasattr(image, "tag_v2") and not any(key in image.info for key in _ORIENTATION_INFO):
        return 1
    return image.getexif().get(0x0112, 1)


def load_image(path: str | Path, channels: int = 3) -> Tensor:
    """Read an image file -> a float32 tensor (channels, H, W) in [0, 1], the EXIF orientation
    applied (a photo shows upright, as a viewer displays it).

    channels=1 -> grey (ITU-R 601 luma of colour images, as PIL's "L"), 3 -> RGB (grey repeated;
    an alpha channel is dropped). 16-bit grey PNGs keep their precision (values / 65535). A file
    that is missing, not an image, truncated or corrupt raises DataError naming the file.
    """
    if channels not in (1, 3):
        raise ValueError(f"load_image: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    Image, _ = _pillow()
    try:
        with Image.open(path) as opened:
            tiff = _orientation(opened) if hasattr(opened, "tag_v2") else None  # TIFF tags are read from the open file
            opened.load()  # decode now: a truncated or corrupt file fails here, not later
            # transposed only when the file says so (most images carry no orientation: no copy)
            method = _UPRIGHT.get(tiff or _orientation(opened))
            image = opened if method is None else opened.transpose(Image.Transpose[method])
            if image.mode.startswith("I;16") or image.mode in ("I", "F"):
                t = to_tensor(image)  # grey at full precision
                return t.expand(channels, -1, -1).contiguous()
            mode = "L" if channels == 1 else "RGB"
            return to_tensor(image if image.mode == mode else image.convert(mode))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        reason = str(e) or type(e).__name__
        raise DataError(f"cannot read image {path}: {reason}") from None


# ---------------------------------------------------------------------------------------------
# Colour: grey, HSV and the jitter adjustments


def to_grayscale(x: Tensor) -> Tensor:
    """RGB (3, H, W) -> luma (1, H, W) = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601); a 1-channel
    image is returned as it is."""
    if x.shape[-3] == 1:
        return x
    if x.shape[-3] != 3:
        raise ValueError(f"grey needs 1 or 3 channels, got {x.shape[-3]}")
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (..., 3, H, W) in [0, 1] -> HSV (..., 3, H, W), each in [0, 1] (hue in turns: 0 red,
    1/3 green, 2/3 blue); the hexcone model of Smith 1978, as Python's colorsys. Grey pixels
    (max = min) get hue 0 and saturation 0."""
    r, g, b = x.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    grey = delta == 0
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, 1), 0)
    d = torch.where(grey, 1, delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(grey, 0, torch.remainder(h / 6.0, 1.0))
    return torch.stack([h, s, maxc], -3)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (..., 3, H, W), each in [0, 1] -> RGB (..., 3, H, W) in [0, 1]; the inverse of
    `rgb_to_hsv` (the six sectors of the hexcone, as Python's colorsys)."""
    h, s, v = x.unbind(-3)
    h6 = torch.remainder(h, 1.0) * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    i = sector.long() % 6
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # sector:       0  1  2  3  4  5
    table = torch.stack([torch.stack([v, q, p, p, t, v], -3),   # R
                         torch.stack([t, v, v, q, p, p], -3),   # G
                         torch.stack([p, p, t, v, v, q], -3)],  # B
                        -4)  # (..., 3, 6, H, W)
    pick = i.unsqueeze(-3).unsqueeze(-3).expand(*table.shape[:-3], 1, *table.shape[-2:])
    return table.gather(-3, pick).squeeze(-3)


def _blend(x: Tensor, other: Tensor | float, factor: float) -> Tensor:
    return (factor * x + (1 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: float) -> Tensor:
    """factor * x, clamped to [0, 1] (0 black, 1 unchanged; PIL's ImageEnhance.Brightness)."""
    return (factor * x).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: float) -> Tensor:
    """factor * x + (1 - factor) * m, clamped to [0, 1], m the mean grey level (luma) of the whole
    image (0 a flat grey image, 1 unchanged; PIL's ImageEnhance.Contrast). The mean is summed in
    float64, so its value does not depend on how many threads torch reduces with."""
    m = to_grayscale(x).double().mean().to(x.dtype)
    return _blend(x, m, factor)


def adjust_saturation(x: Tensor, factor: float) -> Tensor:
    """factor * x + (1 - factor) * grey(x) per pixel, clamped to [0, 1] (0 grey, 1 unchanged;
    PIL's ImageEnhance.Color). A no-op on 1-channel images."""
    if x.shape[-3] == 1:
        return x
    return _blend(x, to_grayscale(x), factor)


def adjust_hue(x: Tensor, shift: float) -> Tensor:
    """Rotate every pixel's hue by `shift` turns (in [-0.5, 0.5]; 1/3: red -> green) in HSV space,
    saturation and value kept. A no-op on 1-channel images."""
    if x.shape[-3] == 1 or shift == 0:
        return x
    if x.shape[-3] != 3:
        raise ValueError(f"hue needs 1 or 3 channels, got {x.shape[-3]}")
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(-3)
    return hsv_to_rgb(torch.stack([torch.remainder(h + shift, 1.0), s, v], -3)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Geometry helpers


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear with antialiasing (a triangle filter widened when shrinking, as PIL's resize), so the
    output is a weighted mean of input pixels and stays in the input's range."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop (h, w) from the middle; a side shorter than asked is first padded with zeros around the
    image (torchvision's CenterCrop)."""
    h, w = size
    H, W = x.shape[-2:]
    if h > H or w > W:
        pad_w, pad_h = max(w - W, 0), max(h - H, 0)
        x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        H, W = x.shape[-2:]
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return x[..., top : top + h, left : left + w]


# ---------------------------------------------------------------------------------------------
# The transforms


@dataclass(frozen=True)
class RandomResizedCrop:
    """A random crop of random area and aspect ratio, resized to `size` (the Inception crop of
    Szegedy et al. 2015, "Going deeper with convolutions"; torchvision's algorithm).

    Up to 10 attempts draw an area fraction uniform in `scale` and an aspect ratio (width / height)
    log-uniform in `ratio`; the first crop that fits inside the image is taken at a uniform
    position. If none fits, the centre crop of the whole image clamped to `ratio`. The crop is then
    resized bilinearly with antialiasing. Image (C, H, W) -> (C, size_h, size_w), values in the
    input's range.
    """

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        object.__setattr__(self, "size", _size(self.size, "size"))
        object.__setattr__(self, "scale", _range(self.scale, "scale", 0.0, 1.0, positive=True))
        object.__setattr__(self, "ratio", _range(self.ratio, "ratio", positive=True))

    def get_params(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """The crop (top, left, h, w) drawn for an image of height x width, inside it."""
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, log_lo, log_hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return _randint(generator, 0, height - h + 1), _randint(generator, 0, width - w + 1), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, max(1, int(round(width / self.ratio[0])))
        elif in_ratio > self.ratio[1]:
            h, w = height, max(1, int(round(height * self.ratio[1])))
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "RandomResizedCrop")
        top, left, h, w = self.get_params(x.shape[-2], x.shape[-1], _need(generator, "RandomResizedCrop"))
        return _resize(x[..., top : top + h, left : left + w], self.size)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with probability p. Image (C, H, W) -> (C, H, W), the same pixels."""

    p: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "p", _number(self.p, "p", 0.0, 1.0))

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "RandomHorizontalFlip")
        if _uniform(_need(generator, "RandomHorizontalFlip"), 0.0, 1.0) < self.p:
            return x.flip(-1)
        return x


@dataclass(frozen=True)
class RandomRotation:
    """Rotate about the image centre by an angle uniform in [-degrees, degrees] (or in a pair
    [low, high]); positive is counter-clockwise, as PIL's Image.rotate and torchvision. The output
    keeps the input's size; pixels from outside the image take `fill` (a float or one per channel,
    in the image's units: 0 is black before Normalize), blended at the border.

    Resampling is bilinear (torchvision defaults to nearest) or "nearest". Image (C, H, W) ->
    (C, H, W); with bilinear, values stay within the range of the input and the fill.
    """

    degrees: float | tuple[float, float]
    fill: float | tuple[float, ...] = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self):
        if isinstance(self.degrees, Sequence) and not isinstance(self.degrees, (str, bytes)):
            degrees = _range(self.degrees, "degrees")
        else:
            d = _number(self.degrees, "degrees", 0.0)
            degrees = (-d, d)
        object.__setattr__(self, "degrees", degrees)
        object.__setattr__(self, "fill", _fill(self.fill, "fill"))
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {self.interpolation!r}")

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "RandomRotation")
        angle = _uniform(_need(generator, "RandomRotation"), *self.degrees)
        return rotate(x, angle, self.fill, self.interpolation)


def rotate(x: Tensor, degrees: float, fill: float | Sequence[float] = 0.0, interpolation: str = "bilinear") -> Tensor:
    """Rotate an image (C, H, W) counter-clockwise by `degrees` about its centre, same size out,
    pixels from outside the image set to `fill` (see RandomRotation)."""
    c, h, w = x.shape
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    # Output pixel -> source pixel is the inverse rotation, [[cos, -sin], [sin, cos]] in pixel units
    # with y pointing down; affine_grid works in [-1, 1] on each axis, hence the H/W factors.
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device)
    fill_t = _per_channel(fill, x, "fill")
    blend = not bool((fill_t == 0).all())
    src = torch.cat([x, torch.ones_like(x[:1])]) if blend else x  # the ones channel: weight of inside pixels
    grid = F.affine_grid(theta[None], [1, src.shape[0], h, w], align_corners=False)
    out = F.grid_sample(src[None], grid, mode=interpolation, padding_mode="zeros", align_corners=False)[0]
    if blend:
        out = out[:c] + (1 - out[c:]) * fill_t
    return out


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, applied in a random order (torchvision's
    ColorJitter; photometric jitter as in Krizhevsky et al. 2012 and Howard 2013).

    brightness b, contrast c, saturation s: a factor uniform in [max(0, 1 - b), 1 + b] (etc.) for
    `adjust_brightness` (f x), `adjust_contrast` (f x + (1 - f) mean grey) and `adjust_saturation`
    (f x + (1 - f) grey per pixel); hue h in [0, 0.5]: a shift uniform in [-h, h] turns of the
    HSV hue circle (`adjust_hue`). Results are clamped to [0, 1]. Saturation and hue are no-ops
    on 1-channel images. Image (C, H, W), C in {1, 3}, values in [0, 1] -> the same.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            object.__setattr__(self, name, _number(getattr(self, name), name, 0.0))
        object.__setattr__(self, "hue", _number(self.hue, "hue", 0.0, 0.5))

    def get_params(self, generator: torch.Generator) -> list[tuple[str, float]]:
        """The adjustments to make, in order: [(name, factor or shift), ...] for the nonzero ones."""
        order = torch.randperm(4, generator=generator).tolist()
        names = ("brightness", "contrast", "saturation", "hue")
        steps = []
        for k in order:
            name, amount = names[k], getattr(self, names[k])
            if amount:
                lo, hi = (-amount, amount) if name == "hue" else (max(0.0, 1 - amount), 1 + amount)
                steps.append((name, _uniform(generator, lo, hi)))
        return steps

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "ColorJitter")
        if x.shape[0] not in (1, 3):
            raise ValueError(f"ColorJitter needs 1 or 3 channels, got {x.shape[0]}")
        adjust = {"brightness": adjust_brightness, "contrast": adjust_contrast,
                  "saturation": adjust_saturation, "hue": adjust_hue}
        for name, amount in self.get_params(_need(generator, "ColorJitter")):
            x = adjust[name](x, amount)
        return x


@dataclass(frozen=True)
class RandomErasing:
    """With probability p, set one random rectangle of the image to `value` (Random Erasing,
    Zhong et al. 2020, "Random Erasing Data Augmentation"; torchvision's algorithm).

    Up to 10 attempts draw an area fraction uniform in `scale` and an aspect ratio (height / width)
    log-uniform in `ratio`; the first rectangle smaller than the image on both sides is erased at a
    uniform position, and if none is, the image is left as it is. `value`: a float, one per
    channel, or "random" (standard normal noise, for images already normalized). Usually placed
    after Normalize, where 0 is the training mean. Image (C, H, W), any range -> the same.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | tuple[float, ...] | str = 0.0

    def __post_init__(self):
        object.__setattr__(self, "p", _number(self.p, "p", 0.0, 1.0))
        object.__setattr__(self, "scale", _range(self.scale, "scale", 0.0, 1.0, positive=True))
        object.__setattr__(self, "ratio", _range(self.ratio, "ratio", positive=True))
        if self.value != "random":
            object.__setattr__(self, "value", _fill(self.value, "value"))

    def get_params(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int] | None:
        """The rectangle (top, left, h, w) to erase, or None (not this time, or nothing fitted)."""
        if not _uniform(generator, 0.0, 1.0) < self.p:
            return None
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, log_lo, log_hi))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                return _randint(generator, 0, height - h + 1), _randint(generator, 0, width - w + 1), h, w
        return None

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "RandomErasing")
        g = _need(generator, "RandomErasing")
        box = self.get_params(x.shape[-2], x.shape[-1], g)
        if box is None:
            return x
        top, left, h, w = box
        if self.value == "random":
            patch = torch.randn((x.shape[0], h, w), generator=g, dtype=x.dtype).to(x.device)
        else:
            patch = _per_channel(self.value, x, "value").expand(-1, h, w)
        x = x.clone()
        x[:, top : top + h, left : left + w] = patch
        return x


@dataclass(frozen=True)
class Resize:
    """Resize with bilinear interpolation and antialiasing (torch.nn.functional.interpolate,
    antialias=True: the triangle filter widened when shrinking, like PIL's BILINEAR). An int size
    sets the shorter side, the longer one keeping the aspect ratio (rounded down, as torchvision);
    a pair [h, w] sets both. Image (C, H, W) -> (C, h, w), values within the input's range."""

    size: int | tuple[int, int]

    def __post_init__(self):
        if isinstance(self.size, (int, np.integer)) and not isinstance(self.size, bool):
            if self.size < 1:
                raise ValueError(f"size must be a positive integer or a pair [height, width] of them, got {self.size!r}")
            object.__setattr__(self, "size", int(self.size))
        else:
            object.__setattr__(self, "size", _size(self.size, "size"))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.size, tuple):
            return self.size
        if height <= width:
            return self.size, max(1, int(self.size * width / height))
        return max(1, int(self.size * height / width)), self.size

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "Resize")
        return _resize(x, self.output_size(x.shape[-2], x.shape[-1]))


@dataclass(frozen=True)
class CenterCrop:
    """The central (h, w) of the image (an int: a square); a side shorter than that is padded with
    zeros first (torchvision's CenterCrop). Image (C, H, W) -> (C, h, w)."""

    size: int | tuple[int, int]

    def __post_init__(self):
        object.__setattr__(self, "size", _size(self.size, "size"))

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _center_crop(_image(image, "CenterCrop"), self.size)


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std per channel, with given statistics (one value, or one per channel; std > 0),
    e.g. the training set's, or ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225). Image
    (C, H, W) in [0, 1] -> (C, H, W), standardized."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        mean, std = _fill(self.mean, "mean"), _fill(self.std, "std")
        mean = mean if isinstance(mean, tuple) else (mean,)
        std = std if isinstance(std, tuple) else (std,)
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0, got {list(std)}")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise ValueError(f"mean and std need the same number of values, got {len(mean)} and {len(std)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _image(image, "Normalize")
        return (x - _per_channel(self.mean, x, "mean")) / _per_channel(self.std, x, "std")


@dataclass(frozen=True)
class Compose:
    """The transforms in order, each given the same generator (so the draws of one follow the
    draws of the one before, all from one per-sample stream).

    >>> pipeline = Compose([Resize(32), CenterCrop(32), Normalize([0.5], [0.25])])
    >>> pipeline(torch.rand(3, 48, 64)).shape
    torch.Size([3, 32, 32])
    """

    transforms: Sequence = field(default_factory=tuple)

    def __post_init__(self):
        transforms = tuple(self.transforms)
        for t in transforms:
            if not callable(t):
                raise ValueError(f"Compose needs callables (image, generator) -> image, got {t!r}")
        object.__setattr__(self, "transforms", transforms)

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            image = t(image, generator)
        return image

    def __len__(self) -> int:
        return len(self.transforms)


# ---------------------------------------------------------------------------------------------
# Recipe keys


KEYS = {
    "image_size": "output size: an int (square) or [height, width]",
    "resize": "shorter side before the centre crop (default: image_size; e.g. 73 for 64, ImageNet's 0.875)",
    "random_resized_crop": "true, or {scale: [lo, hi], ratio: [lo, hi]} (training; needs image_size)",
    "hflip": "probability of a horizontal flip (true: 0.5)",
    "rotate_degrees": "largest rotation angle, or [low, high]",
    "rotate_fill": "value of pixels rotated in (0 black), one or per channel",
    "color_jitter": "{brightness, contrast, saturation, hue}",
    "random_erasing": "probability, or {p, scale, ratio, value} (after normalize)",
    "normalize": "{mean: [...], std: [...]}",
}
_SUBKEYS = {
    "random_resized_crop": ("scale", "ratio"),
    "color_jitter": ("brightness", "contrast", "saturation", "hue"),
    "random_erasing": ("p", "scale", "ratio", "value"),
    "normalize": ("mean", "std"),
}


def _unknown(key: str, choices) -> ValueError:
    choices = sorted(choices)
    return ValueError(f"unknown key '{key}';{did_you_mean(key.rsplit('.', 1)[-1], choices)} valid keys: {', '.join(choices)}")


def _section(options: dict, key: str, required: tuple[str, ...] = ()) -> dict:
    value = options[key]
    if not isinstance(value, dict):
        raise ValueError(f"{key}: must be a mapping of {', '.join(_SUBKEYS[key])}, got {value!r}")
    for sub in value:
        if sub not in _SUBKEYS[key]:
            raise _unknown(f"{key}.{sub}", _SUBKEYS[key])
    for sub in required:
        if sub not in value:
            raise ValueError(f"{key}: needs {sub}")
    return dict(value)


def _build(key: str, make):
    """make() with a bad value's ValueError/TypeError reported under the recipe key."""
    try:
        return make()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: {e}") from None


def _probability(options: dict, key: str) -> float:
    value = options[key]
    if isinstance(value, bool):
        return 0.5 if value else 0.0
    return _build(key, lambda: _number(value, "the probability", 0.0, 1.0))


def from_config(options: dict | None, train: bool) -> Compose:
    """A recipe's transform keys -> the pipeline (see KEYS), for training or evaluation.

    Training: [RandomResizedCrop(image_size) | Resize(resize) + CenterCrop(image_size)],
    RandomHorizontalFlip, RandomRotation, ColorJitter, Normalize, RandomErasing (each where its
    key asks for it). Evaluation (train=False): only the deterministic part, Resize(resize) (the
    shorter side; default image_size, or the larger of [h, w]) + CenterCrop(image_size), then
    Normalize. Without image_size, images keep their size. Every key is checked in both modes: an
    unknown key or a bad value raises ValueError naming the key.

    >>> from_config({"image_size": 32, "hflip": 0.5}, train=False)
    Compose(transforms=(Resize(size=32), CenterCrop(size=(32, 32))))
    """
    options = dict(options or {})
    for key in options:
        if key not in KEYS:
            raise _unknown(key, KEYS)
    size = _build("image_size", lambda: _size(options["image_size"], "the value")) if "image_size" in options else None
    fixed: list = []
    if "resize" in options:
        if size is None:
            raise ValueError("resize: needs image_size (the centre crop after it)")
        fixed = [_build("resize", lambda: Resize(options["resize"])), CenterCrop(size)]
    elif size is not None:
        fixed = [Resize(max(size)), CenterCrop(size)]

    crop = None
    value = options.get("random_resized_crop", False)
    if value is not False and value is not None:
        if size is None:
            raise ValueError("random_resized_crop: needs image_size")
        if value is True:
            crop = RandomResizedCrop(size)
        else:
            args = _section(options, "random_resized_crop")
            crop = _build("random_resized_crop", lambda: RandomResizedCrop(size, **args))
    random: list = []
    if "hflip" in options:
        random.append(RandomHorizontalFlip(_probability(options, "hflip")))
    if "rotate_degrees" in options or "rotate_fill" in options:
        fill = _build("rotate_fill", lambda: _fill(options.get("rotate_fill", 0.0), "the value"))
        degrees = options.get("rotate_degrees", 0.0)
        random.append(_build("rotate_degrees", lambda: RandomRotation(degrees, fill)))
    if "color_jitter" in options:
        args = _section(options, "color_jitter")
        random.append(_build("color_jitter", lambda: ColorJitter(**args)))
    normalize = []
    if "normalize" in options:
        args = _section(options, "normalize", required=("mean", "std"))
        normalize = [_build("normalize", lambda: Normalize(**args))]
    erasing = []
    if "random_erasing" in options:
        if isinstance(options["random_erasing"], dict):
            args = _section(options, "random_erasing")
            erasing = [_build("random_erasing", lambda: RandomErasing(**args))]
        else:
            erasing = [RandomErasing(_probability(options, "random_erasing"))]

    if not train:
        return Compose(fixed + normalize)
    steps = [crop] if crop else fixed
    steps += [t for t in random if _does_something(t)]
    steps += normalize
    steps += [t for t in erasing if _does_something(t)]  # after Normalize: 0 erases to the mean
    return Compose(steps)


def _does_something(t) -> bool:
    if isinstance(t, (RandomHorizontalFlip, RandomErasing)):
        return t.p > 0
    if isinstance(t, RandomRotation):
        return t.degrees != (0.0, 0.0)
    if isinstance(t, ColorJitter):
        return any((t.brightness, t.contrast, t.saturation, t.hue))
    return True
