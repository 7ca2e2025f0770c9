import colorsys
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steepest.data.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    Normalize,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    from_config,
    hsv_to_rgb,
    load_image,
    rgb_to_hsv,
    sample_generator,
    sample_generators,
    to_tensor,
)
from steepest.errors import DataError

Image = pytest.importorskip("PIL.Image")  # Pillow reads image files (steepest imports it only there)

RECIPE = {
    "image_size": 24,
    "random_resized_crop": {"scale": [0.5, 1]},
    "hflip": 0.5,
    "rotate_degrees": 10,
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05},
    "random_erasing": 0.25,
    "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
}


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def gens(n, start=0):
    return [torch.Generator().manual_seed(start + i) for i in range(n)]


# ---------------------------------------------------------------- streams and reproducibility


def test_sample_generator_same_triple_same_stream_any_change_differs():
    def draw(*triple):
        return torch.rand(16, generator=sample_generator(*triple))

    base = draw(3, 5, 7)
    assert torch.equal(base, draw(3, 5, 7))
    triples = [(4, 5, 7), (3, 6, 7), (3, 5, 8), (5, 3, 7), (7, 5, 3), (0, 0, 0), (2**40, 5, 7)]
    streams = [draw(*t) for t in triples] + [base]
    assert len({tuple(s.tolist()) for s in streams}) == len(streams)
    # numbers wider than 32 bits do not run into their neighbours (2**32, 0, 0) vs (0, 1, 0)
    assert not torch.equal(draw(2**32, 0, 0), draw(0, 1, 0))
    for bad in [(-1, 0, 0), (0, 2**64, 0), (0, 0, 1.5), (True, 0, 0)]:
        with pytest.raises(ValueError):
            sample_generator(*bad)


def test_a_micro_batch_of_generators_gives_the_one_by_one_streams():
    indices = [0, 1, 7, 123_456, 2**63 + 11, 2**64 - 1]
    together = sample_generators(5, 3, indices)
    for i, g in zip(indices, together):
        one = sample_generator(5, 3, i)
        assert g.initial_seed() == one.initial_seed()
        assert torch.equal(torch.rand(700, generator=g), torch.rand(700, generator=one))  # past one MT regeneration (624 words)
    assert len({g.initial_seed() for g in together}) == len(indices)
    with pytest.raises(ValueError, match="index"):
        sample_generators(0, 0, [1, -1])


def test_sample_generator_sets_more_than_the_32_bit_seed():
    # torch's manual_seed keys the stream on 32 bits only; the full state must not be that stream
    g = sample_generator(1, 2, 3)
    plain = torch.Generator().manual_seed(g.initial_seed())
    assert not torch.equal(torch.rand(8, generator=g), torch.rand(8, generator=plain))
    low = torch.Generator().manual_seed(g.initial_seed() & 0xFFFFFFFF)
    assert torch.equal(torch.rand(8, generator=torch.Generator().manual_seed(g.initial_seed())), torch.rand(8, generator=low))


def test_random_pipeline_repeats_per_seed_epoch_and_index():
    pipeline = from_config(RECIPE, train=True)
    x = rand(3, 40, 48)
    out = pipeline(x, sample_generator(0, 0, 0))
    assert out.shape == (3, 24, 24)
    assert torch.equal(out, pipeline(x, sample_generator(0, 0, 0)))
    for triple in [(0, 1, 0), (0, 0, 1), (1, 0, 0)]:
        assert not torch.equal(out, pipeline(x, sample_generator(*triple)))


class _Images(torch.utils.data.Dataset):
    def __init__(self, epoch):
        self.x, self.epoch, self.pipeline = rand(8, 3, 20, 20), epoch, from_config(RECIPE, train=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.pipeline(self.x[i], sample_generator(7, self.epoch, i))


def test_dataloader_workers_do_not_change_the_draws():
    def epoch(e, workers):
        loader = torch.utils.data.DataLoader(_Images(e), batch_size=3, num_workers=workers,
                                             multiprocessing_context="fork" if workers else None)
        return torch.cat(list(loader))

    serial = epoch(0, 0)
    assert torch.equal(serial, epoch(0, 2))
    assert not torch.equal(serial, epoch(1, 0))


def test_random_ops_need_a_generator():
    x = rand(3, 8, 8)
    for op in [RandomResizedCrop(4), RandomHorizontalFlip(), RandomRotation(5), ColorJitter(0.1), RandomErasing()]:
        with pytest.raises(ValueError, match="Generator"):
            op(x, None)


# ---------------------------------------------------------------- geometry


def test_flip_mirrors_exactly():
    x = rand(3, 5, 7)
    mirrored = torch.stack([x[:, :, 6 - j] for j in range(7)], -1)
    assert torch.equal(RandomHorizontalFlip(1.0)(x, torch.Generator()), mirrored)
    assert torch.equal(RandomHorizontalFlip(0.0)(x, torch.Generator()), x)
    outcomes = {torch.equal(RandomHorizontalFlip(0.5)(x, g), mirrored) for g in gens(20)}
    assert outcomes == {True, False}


def coordinates(h, w):
    """Channel 0 holds each pixel's row, channel 1 its column."""
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    return torch.stack([rows, cols])


def test_random_resized_crop_window_inside_and_in_range():
    H, W = 30, 50
    crop = RandomResizedCrop((16, 20), scale=(0.2, 0.6), ratio=(0.5, 2.0))
    for g in gens(200):
        top, left, h, w = crop.get_params(H, W, g)
        assert 0 <= top and top + h <= H and 0 <= left and left + w <= W
        # w = round(sqrt(A s r)), h = round(sqrt(A s / r)): undo the rounding for the bounds
        assert 0.2 * H * W <= (h + 0.5) * (w + 0.5) and (h - 0.5) * (w - 0.5) <= 0.6 * H * W
        assert 0.5 <= (w + 0.5) / (h - 0.5) and (w - 0.5) / (h + 0.5) <= 2.0


def test_random_resized_crop_output_comes_from_its_window():
    H, W = 30, 50
    x = coordinates(H, W)
    crop = RandomResizedCrop((16, 20), scale=(0.2, 0.6))
    for seed in range(20):
        top, left, h, w = crop.get_params(H, W, torch.Generator().manual_seed(seed))
        out = crop(x, torch.Generator().manual_seed(seed))
        assert out.shape == (2, 16, 20)
        eps = 1e-9
        assert top - eps <= out[0].min() and out[0].max() <= top + h - 1 + eps
        assert left - eps <= out[1].min() and out[1].max() <= left + w - 1 + eps
        window = x[:, top : top + h, left : left + w]
        ref = F.interpolate(window[None], size=(16, 20), mode="bilinear", align_corners=False, antialias=True)[0]
        torch.testing.assert_close(out, ref)


def test_random_resized_crop_falls_back_to_the_centre():
    # aspect 10 never fits a square image in 10 attempts: the centre crop clamped to the ratio
    x = coordinates(40, 40)
    crop = RandomResizedCrop((4, 40), scale=(0.5, 1.0), ratio=(10.0, 10.0))
    assert crop.get_params(40, 40, torch.Generator().manual_seed(0)) == (18, 0, 4, 40)
    assert torch.equal(crop(x, torch.Generator().manual_seed(0)), x[:, 18:22, :])


def test_rotation_matches_pil_and_keeps_the_aspect():
    square = rand(1, 9, 9)
    ref = np.asarray(Image.fromarray(square[0].numpy(), mode="F").rotate(90))  # PIL: counter-clockwise
    out = RandomRotation((90, 90))(square, torch.Generator())
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-6)
    assert torch.allclose(out, torch.rot90(square, 1, (-2, -1)), atol=1e-6)
    # a wide image: its central square turns like a square image (pixel units, not [-1, 1] units)
    wide = rand(2, 6, 10, seed=1)
    out = RandomRotation((90, 90))(wide, torch.Generator())
    assert torch.allclose(out[:, :, 2:8], torch.rot90(wide[:, :, 2:8], 1, (-2, -1)), atol=1e-6)
    torch.testing.assert_close(RandomRotation((180, 180))(wide, torch.Generator()), wide.flip(-1, -2))
    # the corners come from outside: the fill, per channel
    ones = torch.ones(2, 16, 16)
    out = RandomRotation((45, 45), fill=(0.25, 0.75))(ones, torch.Generator())
    assert out[0, 0, 0] == pytest.approx(0.25) and out[1, 0, 0] == pytest.approx(0.75)
    assert out[:, 8, 8].tolist() == pytest.approx([1.0, 1.0])
    angles = {round(float(RandomRotation(10)(coordinates(9, 9), g)[1, 4, 0]), 6) for g in gens(5)}
    assert len(angles) == 5


def test_resize_and_center_crop_sizes():
    x = rand(3, 48, 64)
    assert Resize(32)(x).shape == (3, 32, 42)  # shorter side 32, longer int(32 * 64 / 48)
    assert Resize(32)(x.transpose(1, 2)).shape == (3, 42, 32)
    assert Resize((20, 30))(x).shape == (3, 20, 30)
    assert CenterCrop(32)(Resize(32)(x)).shape == (3, 32, 32)
    assert torch.equal(CenterCrop((10, 20))(x), x[:, 19:29, 22:42])
    padded = CenterCrop((50, 64))(x)  # a side longer than the image: zeros around it
    assert padded.shape == (3, 50, 64) and torch.equal(padded[:, 1:49], x) and padded[:, 0].abs().sum() == 0
    flat = torch.full((3, 48, 64), 0.3)
    torch.testing.assert_close(Resize(20)(flat), torch.full((3, 20, 26), 0.3))


def test_resize_matches_pil_bilinear():
    x = rand(1, 48, 64)
    ref = np.asarray(Image.fromarray(x[0].numpy(), mode="F").resize((26, 20), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(Resize((20, 26))(x)[0].numpy(), ref, atol=1e-5)


def test_random_erasing_erases_one_rectangle_in_the_area_range():
    H, W = 40, 50
    erase = RandomErasing(p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), value=0.0)
    seen = set()
    for g in gens(60):
        out = erase(torch.ones(3, H, W), g)
        hit = out[0] == 0
        assert torch.equal(hit, out[1] == 0) and torch.equal(hit, out[2] == 0)
        rows, cols = hit.any(1).nonzero()[:, 0], hit.any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w  # one block
        assert hit.sum() == h * w  # a full rectangle
        assert 0.1 * H * W <= (h + 0.5) * (w + 0.5) and (h - 0.5) * (w - 0.5) <= 0.2 * H * W
        assert 0.5 <= (h + 0.5) / (w - 0.5) and (h - 0.5) / (w + 0.5) <= 2.0
        seen.add((int(rows[0]), int(cols[0]), h, w))
    assert len(seen) > 30
    x = rand(3, H, W)
    assert torch.equal(RandomErasing(p=0.0)(x, torch.Generator()), x)
    out = RandomErasing(p=1.0, value=(1.0, 2.0, 3.0))(x, torch.Generator().manual_seed(0))
    changed = out != x
    assert changed.any() and torch.equal(out[changed].unique(), torch.tensor([1.0, 2.0, 3.0]))


# ---------------------------------------------------------------- colour


def test_hsv_round_trip():
    x = rand(3, 32, 32)
    x[:, 0, :6] = torch.tensor([[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1]]).T
    hsv = rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-6, rtol=0)


def test_hsv_and_hue_rotation_match_colorsys():
    x = rand(3, 10, 10, seed=3)
    pixels = x.reshape(3, -1).T.double().tolist()
    hsv = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels], dtype=torch.float64).T.reshape(3, 10, 10)
    torch.testing.assert_close(rgb_to_hsv(x).double(), hsv, atol=1e-6, rtol=0)
    for shift in (0.2, -0.35, 0.5):
        ref = []
        for p in pixels:
            h, s, v = colorsys.rgb_to_hsv(*p)
            ref.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
        ref = torch.tensor(ref, dtype=torch.float64).T.reshape(3, 10, 10)
        torch.testing.assert_close(adjust_hue(x, shift).double(), ref, atol=1e-6, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).reshape(3, 1, 1))


def test_saturation_zero_gives_grey():
    x = rand(3, 6, 6)
    grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    out = adjust_saturation(x, 0.0)
    torch.testing.assert_close(out, grey.expand(3, 6, 6))
    torch.testing.assert_close(adjust_saturation(x, 1.0), x)
    torch.testing.assert_close(adjust_saturation(x, 1.5), (1.5 * x - 0.5 * grey).clamp(0, 1))


def test_brightness_and_contrast_formulas():
    x = rand(3, 6, 6)
    torch.testing.assert_close(adjust_brightness(x, 1.3), (1.3 * x).clamp(0, 1))
    mean = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
    torch.testing.assert_close(adjust_contrast(x, 0.6), (0.6 * x + 0.4 * mean).clamp(0, 1))
    torch.testing.assert_close(adjust_contrast(x, 0.0), mean.expand(3, 6, 6))
    grey = rand(1, 6, 6)
    torch.testing.assert_close(adjust_contrast(grey, 1.7), (1.7 * grey - 0.7 * grey.mean()).clamp(0, 1))


def test_color_jitter_draws_factors_in_range_and_applies_the_formulas():
    x = rand(3, 8, 8) * 0.5 + 0.1  # no clamping at 1.2 x
    for g in gens(10):
        out = ColorJitter(brightness=0.2)(x, g)
        f = float((out / x).mean())
        assert 0.8 <= f <= 1.2
        torch.testing.assert_close(out, f * x)
        out = ColorJitter(contrast=0.3)(x, g)
        m = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
        f = float(((out - m) / (x - m)).median())
        assert 0.7 <= f <= 1.3
        torch.testing.assert_close(out, (f * x + (1 - f) * m).clamp(0, 1))
    grey = rand(1, 8, 8)
    assert torch.equal(ColorJitter(saturation=0.5, hue=0.3)(grey, torch.Generator()), grey)
    outs = [ColorJitter(0.2, 0.2, 0.2, 0.1)(x, g) for g in gens(3)]
    assert not torch.equal(outs[0], outs[1]) and all(o.min() >= 0 and o.max() <= 1 for o in outs)


def test_normalize_exact():
    x = rand(3, 4, 5)
    out = Normalize([0.1, 0.2, 0.3], [0.3, 0.7, 1.9])(x)
    for c, (m, s) in enumerate([(0.1, 0.3), (0.2, 0.7), (0.3, 1.9)]):
        assert torch.equal(out[c], (x[c] - m) / s)
    assert torch.equal(Normalize([0.45], [0.3])(x), (x - 0.45) / 0.3)
    with pytest.raises(ValueError):
        Normalize([0.1, 0.2], [0.5, 0.5])(x)
    with pytest.raises(ValueError):
        Normalize([0.1], [0.0])


# ---------------------------------------------------------------- files


def test_load_image_gray_and_rgb(tmp_path):
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    colour = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    Image.fromarray(colour, mode="RGB").save(tmp_path / "colour.png")
    g1 = load_image(tmp_path / "grey.png", channels=1)
    assert g1.shape == (1, 4, 6) and g1.dtype == torch.float32
    assert torch.equal(g1[0], torch.from_numpy(grey).float() / 255)
    assert torch.equal(load_image(tmp_path / "grey.png", channels=3), g1.expand(3, 4, 6))
    c3 = load_image(str(tmp_path / "colour.png"), channels=3)
    assert c3.shape == (3, 5, 7) and torch.equal(c3, torch.from_numpy(colour).permute(2, 0, 1).float() / 255)
    luma = np.array(Image.fromarray(colour).convert("L"))
    assert torch.equal(load_image(tmp_path / "colour.png", channels=1)[0], torch.from_numpy(luma).float() / 255)
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    torch.testing.assert_close(load_image(tmp_path / "deep.png", 1)[0], torch.from_numpy(deep.astype(np.float32)) / 65535)
    assert to_tensor(Image.fromarray(colour)).shape == (3, 5, 7)


def test_load_image_applies_exif_orientation(tmp_path):
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    image = Image.fromarray(pixels, mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown rotated 90 degrees clockwise
    image.save(tmp_path / "turned.png", exif=exif)
    out = load_image(tmp_path / "turned.png", channels=1)
    assert torch.equal(out[0], torch.from_numpy(np.rot90(pixels, -1).copy()).float() / 255)
    # every place Pillow reads an orientation from: EXIF in a JPEG and a TIFF's tags, XMP in a PNG
    image.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    image.save(tmp_path / "turned.tif", exif=exif)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    image.save(tmp_path / "xmp.png", pnginfo=_png_text("XML:com.adobe.xmp", xmp.decode()))
    for name in ("turned.jpg", "turned.tif", "xmp.png"):
        assert load_image(tmp_path / name, channels=1).shape == (1, 3, 2), name
    image.save(tmp_path / "upright.png")
    assert load_image(tmp_path / "upright.png", channels=1).shape == (1, 2, 3)


def _png_text(key: str, value: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(key, value)
    return info


def test_load_image_bad_files_raise_data_error_naming_them(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            load_image(tmp_path / name)
    with pytest.raises(ValueError):
        load_image(tmp_path / "whole.png", channels=2)


# ---------------------------------------------------------------- recipe keys


@pytest.mark.parametrize("options, key", [
    ({"hflp": 0.5}, "hflp"),
    ({"color_jitter": {"brightnes": 0.1}}, "color_jitter.brightnes"),
    ({"hflip": 1.5}, "hflip"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": [8, "x"]}, "image_size"),
    ({"image_size": 8, "random_resized_crop": {"scale": [0.9, 0.1]}}, "random_resized_crop"),
    ({"random_resized_crop": True}, "random_resized_crop"),
    ({"rotate_degrees": "ten"}, "rotate_degrees"),
    ({"color_jitter": {"hue": 0.7}}, "color_jitter"),
    ({"color_jitter": 0.2}, "color_jitter"),
    ({"random_erasing": {"p": 0.5, "scale": [0, 0.2]}}, "random_erasing"),
    ({"random_erasing": -0.1}, "random_erasing"),
    ({"normalize": {"mean": [0.5]}}, "normalize"),
    ({"normalize": {"mean": [0.5], "std": [-1]}}, "normalize"),
])
def test_from_config_rejects_unknown_keys_and_bad_values(options, key):
    for train in (True, False):
        with pytest.raises(ValueError, match=f"^{key}|'{key}'"):
            from_config(options, train=train)


def test_from_config_suggests_the_key_meant():
    with pytest.raises(ValueError, match="did you mean 'hflip'"):
        from_config({"hflp": 0.5}, train=True)


def test_evaluation_pipeline_is_deterministic():
    pipeline = from_config({**RECIPE, "resize": 28}, train=False)
    assert [type(t) for t in pipeline.transforms] == [Resize, CenterCrop, Normalize]
    x = rand(3, 40, 56)
    out = pipeline(x, None)
    assert out.shape == (3, 24, 24)
    for triple in [(0, 0, 0), (0, 1, 0), (5, 3, 9)]:
        assert torch.equal(pipeline(x, sample_generator(*triple)), out)
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    torch.testing.assert_close(out, (CenterCrop(24)(Resize(28)(x)) - mean) / std)
    train = from_config(RECIPE, train=True)
    assert [type(t) for t in train.transforms] == [RandomResizedCrop, RandomHorizontalFlip, RandomRotation,
                                                   ColorJitter, Normalize, RandomErasing]
    assert len(from_config({}, train=True)) == 0 and isinstance(from_config(None, train=False), Compose)
    assert math.isclose(from_config({"hflip": True}, train=True).transforms[0].p, 0.5)
