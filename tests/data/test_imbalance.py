import hashlib

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from steepest.config import recipe_from_dict
from steepest.data import DeviceLoader, load_data
from steepest.data.imbalance import (
    adasyn,
    adasyn_counts,
    average_precision,
    class_weights,
    oversample,
    sample_weights,
    smote,
    undersample_hard,
)


def imbalanced(n=400, pos=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < pos).long()
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) + 2 * y[:, None]
    return x, y


def test_class_weights_and_sampler_balance_classes():
    x, y = imbalanced()
    w = class_weights(y, 2)
    counts = torch.bincount(y).double()
    assert torch.allclose(w.double() * counts, torch.full((2,), len(y) / 2.0, dtype=torch.float64))
    loader = DeviceLoader(x, y, 64, weights=sample_weights(y, 2), seed=1)
    drawn = torch.cat([b[1] for b in loader.batches(0)] + [b[1] for b in loader.batches(1)])
    assert abs(float(drawn.double().mean()) - 0.5) < 0.07


def test_smote_samples_lie_between_same_class_neighbours():
    x, y = imbalanced()
    nx, ny = smote(x, y, 2, torch.Generator().manual_seed(0), k=3)
    assert torch.bincount(ny).tolist() == [int(torch.bincount(y).max())] * 2
    minority = x[y == 1]
    made = nx[len(x):]
    assert torch.all(ny[len(x):] == 1)
    for s in made[:40]:
        # some pair (a, b) of real minority samples has s = a + u (b - a), u in [0, 1]
        best = float("inf")
        for a in minority:
            d = minority - a
            u = ((s - a) * d).sum(1) / (d * d).sum(1).clamp_min(1e-12)
            ok = (u >= -1e-9) & (u <= 1 + 1e-9)
            resid = (a + u[:, None] * d - s).norm(dim=1)
            best = min(best, float(resid[ok].min()) if ok.any() else float("inf"))
        assert best < 1e-9


def test_oversample_and_undersample():
    x, y = imbalanced()
    ox, oy = oversample(x, y, 2, torch.Generator().manual_seed(0))
    assert torch.bincount(oy)[0] == torch.bincount(oy)[1]
    rows = {tuple(r.tolist()) for r in x}
    assert all(tuple(r.tolist()) in rows for r in ox)  # copies only
    ux, uy = undersample_hard(x, y, 2)
    assert torch.bincount(uy)[0] == torch.bincount(uy)[1]
    kept_major = ux[uy == 0]
    dropped = [r for r in x[y == 0] if not any(torch.equal(r, k) for k in kept_major)]
    margin = lambda r: float((x[y == 1] - r).norm(dim=1).min())  # noqa: E731
    assert max(margin(r) for r in kept_major) <= min(margin(r) for r in dropped) + 1e-12


def _hashes(t):
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in t}


@pytest.mark.parametrize("balance", ["oversample", "smote", "adasyn", "undersample"])
def test_resampling_happens_after_the_split(balance):
    base = load_data(recipe_from_dict({"data": {"name": "breast_cancer"}}).data)
    data = load_data(recipe_from_dict({"data": {"name": "breast_cancer", "balance": balance}}).data)
    assert torch.equal(base.val.x, data.val.x) and torch.equal(base.test.x, data.test.x)  # untouched
    held_out = _hashes(data.val.x) | _hashes(data.test.x)
    assert not (_hashes(data.train.x) & held_out)
    counts = torch.bincount(data.train.y)
    assert counts[0] == counts[1]


def test_average_precision_equals_sklearn():
    g = torch.Generator().manual_seed(3)
    scores, labels = torch.randn(200, generator=g), (torch.rand(200, generator=g) < 0.3).long()
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels.numpy(), scores.numpy()))
    assert np.isfinite(average_precision(scores, torch.zeros(200, dtype=torch.long)))


def test_adasyn_counts_follow_the_share_of_other_class_neighbours():
    x, y = imbalanced(seed=3)
    k, need = 5, 100
    counts = adasyn_counts(x, y, 1, need, k)
    # the paper's equations written out: Delta_i over the k nearest neighbours in the whole set
    idx = torch.nonzero(y == 1).reshape(-1)
    delta = []
    for i in idx:
        d = (x - x[i]).norm(dim=1)
        d[i] = float("inf")
        delta.append(float((y[d.argsort()[:k]] != 1).sum()))
    r = torch.tensor(delta, dtype=torch.float64) / k
    g = r / r.sum() * need
    assert int(counts.sum()) == need
    assert ((counts.double() - g).abs() < 1).all()  # rounding moves each count by less than one
    assert counts[r == 0].sum() == 0 and counts.max() > 0  # samples among their own class seed nothing


def test_adasyn_samples_lie_between_same_class_neighbours_and_balance_the_classes():
    x, y = imbalanced(seed=1)
    nx, ny = adasyn(x, y, 2, torch.Generator().manual_seed(0), k=3)
    assert torch.bincount(ny).tolist() == [int(torch.bincount(y).max())] * 2
    minority, made = x[y == 1], nx[len(x):]
    for s in made[:30]:
        d = minority[:, None, :] - minority[None, :, :]  # every pair (a, b): s = b + u (a - b)?
        b = minority[None, :, :].expand_as(d)
        u = ((s - b) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12)
        resid = (b + u[..., None] * d - s).norm(dim=-1)
        ok = (u >= -1e-9) & (u <= 1 + 1e-9) & ((d * d).sum(-1) > 0)
        assert float(resid[ok].min()) < 1e-9
