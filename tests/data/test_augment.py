import torch

from steepest.config import load_recipe
from steepest.data.augment import (
    ImageAugment,
    expand,
    random_erase,
    spec_mask,
    synonym_swap,
    word_dropout,
)
from steepest.train.run import build_run


def images(n=6):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_deterministic_and_shape_preserving():
    aug = ImageAugment(crop_pad=2, hflip=True, rotate_degrees=10, brightness=0.1, contrast=0.1, erase_prob=0.5)
    x = images()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_value_ranges():
    x = images()
    geo = ImageAugment(crop_pad=3, rotate_degrees=15)(x, torch.Generator().manual_seed(1))
    assert geo.min() >= 0 and geo.max() <= x.max() + 1e-6  # interpolation with zero padding stays in range
    crop = ImageAugment(crop_pad=3)(x, torch.Generator().manual_seed(1))
    kept = set(x.flatten().tolist()) | {0.0}
    assert set(crop.flatten().tolist()) <= kept  # a pure shift moves pixels, it does not invent values
    erased = random_erase(x, 1.0, torch.Generator().manual_seed(2))
    assert ((erased == 0) | (erased == x)).all() and (erased == 0).sum() > 0


def test_text_and_spectrogram_transforms():
    ids = torch.arange(1, 41).reshape(2, 20)
    dropped = word_dropout(ids, 0.5, torch.Generator().manual_seed(0))
    assert ((dropped == 0) | (dropped == ids)).all() and (dropped == 0).any()
    swapped = synonym_swap(ids, {3: [100, 101]}, 1.0, torch.Generator().manual_seed(0))
    assert int(swapped[0, 2]) in (100, 101) and torch.equal(swapped[1], ids[1])
    spec = torch.ones(2, 40, 100)
    masked = spec_mask(spec, torch.Generator().manual_seed(0), freq_width=8, time_width=20)
    assert masked.shape == spec.shape and (masked == 0).any() and (masked == 1).any()


def test_expand_times_ten():
    x, y = images(4), torch.arange(4)
    ex, ey = expand(x, y, ImageAugment(crop_pad=2), 9, torch.Generator().manual_seed(0))
    assert len(ex) == 40 and torch.equal(ex[:4], x) and torch.equal(ey, y.repeat(10))


def test_augmentation_only_on_training_batches(shared_data):
    recipe = load_recipe("mnist_cnn", ["data.subset=256", "trainer.max_steps=2", "data.augment={crop_pad: 2, erase_prob: 1.0}",
                                       "data.batch_size=64"])
    run = build_run(recipe, None, console=False)
    seen = []
    inner = run.trainer.engine.batch_transform
    run.trainer.engine.batch_transform = lambda x, y: seen.append(1) or inner(x, y)
    run.trainer.fit()
    assert len(seen) == 2  # one per training micro-batch
    run.trainer.evaluate("val")
    assert len(seen) == 2  # evaluation never augments
