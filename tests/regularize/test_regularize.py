import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steepest.losses.functional import cross_entropy
from steepest.regularize import (
    CutMix,
    DropConnectLinear,
    Mixup,
    MixupCutMix,
    apply_dropconnect,
    insert_dropout,
    set_dropout,
    smooth_targets,
)


def batch(n=8, k=5):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 1, 12, 12, generator=g), torch.randint(0, k, (n,), generator=g)


def test_mixup_is_the_closed_form_and_deterministic():
    x, y = batch()
    out1, q1 = Mixup(0.4, 5)(x, y, torch.Generator().manual_seed(0))
    out2, q2 = Mixup(0.4, 5)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out1, out2) and torch.equal(q1, q2)
    g = torch.Generator().manual_seed(0)
    m = Mixup(0.4, 5)
    out, q = m(x, y, g)
    lam = m.last_lam
    # recover the permutation: the row j mixed into row i satisfies out_i = lam x_i + (1 - lam) x_j
    for i in range(len(x)):
        j = min(range(len(x)), key=lambda j: float((lam * x[i] + (1 - lam) * x[j] - out[i]).abs().max()))
        assert torch.allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
        expected = lam * F.one_hot(y[i], 5).float() + (1 - lam) * F.one_hot(y[j], 5).float()
        assert torch.allclose(q[i], expected, atol=1e-6)
    assert torch.allclose(q.sum(1), torch.ones(len(x)))


def test_cutmix_lambda_equals_the_pasted_area():
    x, y = batch()
    x2 = torch.arange(len(x)).float().view(-1, 1, 1, 1).expand_as(x).clone()  # image i is filled with value i
    for seed in range(10):
        cm = CutMix(1.0, 5)
        out, q = cm(x2, y, torch.Generator().manual_seed(seed))
        for i in range(len(x)):
            kept = int((out[i] == i).sum()) / out[i].numel()
            # kept == 1 when the box came from the image itself (the permutation may fix i)
            assert kept == pytest.approx(cm.last_lam, abs=1e-12) or kept == 1.0
        assert torch.allclose(q.sum(1), torch.ones(len(x)))
    assert out.shape == x.shape and out.min() >= 0


def test_label_smoothing_folded_into_soft_targets_equals_torch():
    z, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 4, (6,))
    q = smooth_targets(y, 4, 0.1).double()
    assert cross_entropy(z, q) == pytest.approx(float(F.cross_entropy(z, y, label_smoothing=0.1)))
    _, qm = MixupCutMix(num_classes=4, label_smoothing=0.1)(torch.rand(6, 1, 4, 4), y, torch.Generator().manual_seed(1))
    assert float(qm.min()) >= 0.1 / 4 - 1e-6


def test_dropconnect_masks_weights_not_activations():
    layer = DropConnectLinear(5, 3, p=0.4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    out = layer(x)
    mask = torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(0)) >= 0.4
    expected = x @ (layer.weight * mask / 0.6).T + layer.bias
    assert torch.allclose(out, expected, atol=1e-6)
    layer.eval()
    assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    layer.generator = torch.Generator().manual_seed(0)
    layer(x).sum().backward()
    assert torch.all(layer.weight.grad[~mask] == 0) and torch.all(layer.weight.grad[mask] != 0)


def test_apply_dropconnect_and_dropout_helpers():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    w = model[0].weight.detach().clone()
    apply_dropconnect(model, 0.3)
    assert isinstance(model[0], DropConnectLinear) and isinstance(model[2], DropConnectLinear) and type(model[4]) is nn.Linear
    assert torch.equal(model[0].weight, w)
    seq = insert_dropout(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 0.2)
    assert [type(m) for m in seq] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert set_dropout(seq, 0.5) == 1 and seq[2].p == 0.5


def test_mixup_recipe_trains_and_resumes_exactly(crash_resume):
    a, b = crash_resume(["data.subset=300", "trainer.max_epochs=4", "batch_transform={name: mixup_cutmix}"], 9)
    assert all(torch.equal(a[k], b[k]) for k in a)
