import pytest
import torch
import torch.nn.functional as F

from steepest.errors import ConfigError
from steepest.regularize import (
    BATCH_TRANSFORMS,
    TRANSFORMS,
    CutMix,
    Mixup,
    MixupCutMix,
    sample_beta,
    smooth_targets,
)


def batch(n=8, k=5, shape=(1, 12, 10)):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, *shape, generator=g), torch.randint(0, k, (n,), generator=g)


def id_images(n=8, h=12, w=10):
    """Image i is filled with the value i, so every output pixel tells which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(-1, 1, 1, 1).expand(n, 2, h, w).clone()


@pytest.mark.parametrize("alpha", [0.01, 0.4, 2.0])
def test_sample_beta_has_the_beta_moments(alpha):
    g = torch.Generator().manual_seed(0)
    lam = torch.stack([sample_beta(alpha, g) for _ in range(3000)]).double()
    assert torch.isfinite(lam).all() and lam.min() >= 0 and lam.max() <= 1
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(lam.var()) == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.1)  # Var Beta(a, a)


def test_mixup_is_deterministic_uses_only_its_generator_and_is_the_closed_form():
    x, y = batch()
    rng = torch.get_rng_state()
    out1, q1 = Mixup(0.4, 5)(x, y, torch.Generator().manual_seed(0))
    out2, q2 = Mixup(0.4, 5)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out1, out2) and torch.equal(q1, q2)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG was not touched
    m = Mixup(0.4, 5)
    out, q = m(x, y, torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)  # documented draw order: perm, then lam
    perm, lam = torch.randperm(len(x), generator=replay), sample_beta(0.4, replay)
    assert torch.equal(m.last_index, perm) and torch.equal(m.last_lam, lam) and 0 < float(lam) < 1
    assert torch.allclose(out, lam * x + (1 - lam) * x[perm], rtol=0, atol=1e-7)
    onehot = F.one_hot(y, 5).float()
    assert torch.allclose(q, lam * onehot + (1 - lam) * onehot[perm], atol=1e-7)
    assert torch.allclose(q.sum(1), torch.ones(len(x)))
    assert not torch.equal(perm, torch.arange(len(x)))  # the test would be vacuous otherwise


def test_cutmix_lambda_equals_the_pasted_pixel_share():
    x, (_, y) = id_images(), batch()
    h, w = x.shape[-2:]
    clipped = 0
    for seed in range(30):
        cm = CutMix(1.0, 5)
        out, q = cm(x, y, torch.Generator().manual_seed(seed))
        replay = torch.Generator().manual_seed(seed)
        torch.randperm(len(x), generator=replay)
        drawn = float(sample_beta(1.0, replay))
        lam, perm = float(cm.last_lam), cm.last_index
        clipped += abs(lam - drawn) > 1 / (h * w)  # the box was clipped: lam was recomputed
        assert torch.allclose(q.sum(1), torch.ones(len(x)))
        for i in range(len(x)):
            j = int(perm[i])
            expected_q = lam * F.one_hot(y[i], 5) + (1 - lam) * F.one_hot(y[j], 5)
            assert torch.allclose(q[i], expected_q.float(), atol=1e-6)
            if j == i:
                assert torch.equal(out[i], x[i])
                continue
            pasted = out[i] == j
            assert int(pasted.sum()) + int((out[i] == i).sum()) == out[i].numel()
            assert float(pasted.float().mean()) == pytest.approx(1 - lam, abs=1e-6)
            rows, cols = pasted[0].any(1), pasted[0].any(0)  # the pasted region is one rectangle
            assert int(pasted[0].sum()) == int(rows.sum()) * int(cols.sum())
            assert torch.equal(pasted[0], pasted[1])  # the same box in every channel
    assert clipped > 0


def test_label_smoothing_as_soft_targets_equals_torch():
    z, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 4, (6,))
    for eps in (0.0, 0.1, 0.3):
        q = smooth_targets(y, 4, eps, dtype=torch.float64)
        assert torch.allclose(q.sum(1), torch.ones(6, dtype=torch.float64))
        assert float(F.cross_entropy(z, q)) == pytest.approx(float(F.cross_entropy(z, y, label_smoothing=eps)), rel=1e-12)
    m = Mixup(0.4, 4, label_smoothing=0.1)
    _, qm = m(torch.rand(6, 3), y, torch.Generator().manual_seed(1))
    s, lam = smooth_targets(y, 4, 0.1), m.last_lam
    assert torch.allclose(qm, lam * s + (1 - lam) * s[m.last_index])
    assert float(qm.min()) >= 0.1 / 4 - 1e-6


def test_mixup_cutmix_switches_per_batch():
    x, (_, y) = id_images(), batch()

    def is_cutmix(out, perm):  # every pixel is either the image itself or its partner
        return bool(((out == x) | (out == x[perm])).all())

    for switch, expect in ((1.0, True), (0.0, False)):
        t = MixupCutMix(switch_prob=switch, num_classes=5)
        out, _ = t(x, y, torch.Generator().manual_seed(0))
        assert is_cutmix(out, t.last_index) is expect
    t, g, hits = MixupCutMix(switch_prob=0.5, num_classes=5), torch.Generator().manual_seed(0), 0
    for _ in range(60):
        out, q = t(x, y, g)
        hits += is_cutmix(out, t.last_index)
        assert torch.allclose(q.sum(1), torch.ones(len(x)))
    assert 15 <= hits <= 45


def test_prob_zero_returns_the_batch_and_smoothed_targets():
    x, y = batch()
    for t in (Mixup(0.4, 5, 0.1, prob=0.0), CutMix(1.0, 5, 0.1, prob=0.0), MixupCutMix(num_classes=5, label_smoothing=0.1, prob=0.0)):
        out, q = t(x, y, torch.Generator().manual_seed(0))
        assert torch.equal(out, x) and torch.allclose(q, smooth_targets(y, 5, 0.1)) and float(t.last_lam) == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="CutMix needs images"):
        CutMix(1.0, 3)(torch.rand(4, 5), torch.tensor([0, 1, 2, 0]), torch.Generator())
    with pytest.raises(TypeError, match="floating-point"):
        Mixup(0.2, 3)(torch.zeros(4, 5, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]), torch.Generator())
    with pytest.raises(ValueError, match="alpha"):
        Mixup(0.0, 3)
    with pytest.raises(ValueError, match="prob"):
        CutMix(1.0, 3, prob=1.5)


def test_registry():
    assert TRANSFORMS is BATCH_TRANSFORMS and BATCH_TRANSFORMS.names() == ["cutmix", "mixup", "mixup_cutmix"]
    t = BATCH_TRANSFORMS.build("mixup_cutmix", num_classes=3, switch_prob=0.2)
    assert isinstance(t, MixupCutMix) and t.switch_prob == 0.2 and t.num_classes == 3
    assert all(BATCH_TRANSFORMS.get(n).summary for n in BATCH_TRANSFORMS)
    with pytest.raises(ConfigError, match="did you mean 'cutmix'"):
        BATCH_TRANSFORMS.get("cutmx", "batch_transform")


def test_mixup_recipe_trains_and_resumes_exactly(crash_resume):
    a, b = crash_resume(["data.subset=300", "trainer.max_epochs=4", "batch_transform={name: mixup, alpha: 0.4}"], 9)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_device_with_a_device_generator():
    x, y = id_images().cuda(), batch()[1].cuda()
    t = MixupCutMix(num_classes=5, label_smoothing=0.1, prob=0.9)
    out, q = t(x, y, torch.Generator("cuda").manual_seed(0))
    assert out.device.type == q.device.type == t.last_lam.device.type == "cuda"
    assert torch.allclose(q.sum(1), torch.ones(len(x), device="cuda"))
    out_cpu_gen, _ = t(x, y, torch.Generator().manual_seed(0))  # a CPU generator also works
    assert out_cpu_gen.device.type == "cuda"
