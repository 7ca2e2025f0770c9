"""Every loss against its formula written out here, plus gradcheck in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from steepest.losses import LOSSES, elastic_net, l1_penalty, l2_penalty
from steepest.losses import functional as L

torch.manual_seed(0)
N, K = 6, 4


def rnd(*shape, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


@torch.no_grad()
def test_regression_losses_formulas():
    p, y = rnd(N, 1), torch.randn(N, dtype=torch.float64) * 2
    e = p.detach().reshape(-1) - y
    assert L.mse(p, y) == pytest.approx(float((e**2).mean()))
    assert L.mae(p, y) == pytest.approx(float(e.abs().mean()))
    d = 0.7
    hub = [0.5 * v * v if abs(v) <= d else d * (abs(v) - 0.5 * d) for v in e.tolist()]
    assert L.huber(p, y, d) == pytest.approx(sum(hub) / N)
    sl1 = [0.5 * v * v / d if abs(v) < d else abs(v) - 0.5 * d for v in e.tolist()]
    assert L.smooth_l1(p, y, d) == pytest.approx(sum(sl1) / N)
    assert L.smooth_l1(p, y, d) == pytest.approx(float(F.smooth_l1_loss(p.reshape(-1), y, beta=d)))


@torch.no_grad()
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cross_entropy_label_smoothing_equals_torch_and_formula(eps):
    z, y = rnd(N, K), torch.randint(0, K, (N,))
    ours = L.cross_entropy(z, y, label_smoothing=eps)
    assert ours == pytest.approx(float(F.cross_entropy(z, y, label_smoothing=eps)))
    q = F.one_hot(y, K).double() * (1 - eps) + eps / K
    manual = -(q * torch.log(torch.softmax(z.detach(), -1))).sum(-1).mean()
    assert ours == pytest.approx(float(manual))
    soft = L.cross_entropy(z, q)  # the same distribution given as soft targets
    assert soft == pytest.approx(float(manual))


@torch.no_grad()
def test_bce_focal_formulas():
    z, y = rnd(N, 1), torch.randint(0, 2, (N, 1)).double()
    p = torch.sigmoid(z.detach())
    pw = 3.0
    manual = -(pw * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert L.bce_with_logits(z, y, pw) == pytest.approx(float(manual))
    g, a = 2.0, 0.25
    pt = torch.where(y == 1, p, 1 - p)
    at = torch.where(y == 1, torch.tensor(a, dtype=torch.float64), torch.tensor(1 - a, dtype=torch.float64))
    assert L.focal(z, y, g, a) == pytest.approx(float((-at * (1 - pt) ** g * torch.log(pt)).mean()))
    zm, ym = rnd(N, K), torch.randint(0, K, (N,))
    alpha = [0.1, 0.2, 0.3, 0.4]
    pm = torch.softmax(zm.detach(), -1)[torch.arange(N), ym]
    manual = (-torch.tensor(alpha, dtype=torch.float64)[ym] * (1 - pm) ** g * torch.log(pm)).mean()
    assert L.focal(zm, ym, g, alpha) == pytest.approx(float(manual))
    assert L.focal(zm, ym, 0.0) == pytest.approx(float(F.cross_entropy(zm, ym)))


@torch.no_grad()
def test_dice_and_bce_dice():
    z, y = rnd(2, 1, 5, 5), (torch.rand(2, 1, 5, 5) > 0.5).double()
    p = torch.sigmoid(z.detach())
    manual = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    assert L.dice(z, y) == pytest.approx(float(manual))
    assert L.bce_dice(z, y, 0.3) == pytest.approx(0.3 * float(F.binary_cross_entropy_with_logits(z, y)) + 0.7 * float(manual))
    zm, ym = rnd(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    pm = torch.softmax(zm.detach(), 1)
    oh = F.one_hot(ym, 3).permute(0, 3, 1, 2).double()
    per = [1 - (2 * (pm[:, c] * oh[:, c]).sum() + 1) / (pm[:, c].sum() + oh[:, c].sum() + 1) for c in range(3)]
    assert L.dice(zm, ym) == pytest.approx(float(sum(per) / 3))


@torch.no_grad()
def test_metric_learning_losses():
    a, b = rnd(N, 3), rnd(N, 3)
    sim = torch.tensor([1, 0, 1, 0, 0, 1])
    d = (a - b).detach().norm(dim=-1)
    manual = (sim * d**2 + (1 - sim) * torch.clamp(1.5 - d, min=0) ** 2).mean()
    assert L.contrastive(a, b, sim, 1.5) == pytest.approx(float(manual))
    n = rnd(N, 3)
    manual = torch.clamp((a - b).detach().norm(dim=-1) - (a - n).detach().norm(dim=-1) + 0.5, min=0).mean()
    assert L.triplet(a, b, n, 0.5) == pytest.approx(float(manual))
    assert L.triplet(a, b, n, 0.5) == pytest.approx(float(F.triplet_margin_loss(a, b, n, margin=0.5, eps=0)), rel=1e-6)
    emb, labels = rnd(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    D = torch.cdist(emb.detach(), emb.detach())
    losses = []
    for i in range(8):
        pos = [D[i, j] for j in range(8) if labels[j] == labels[i] and j != i]
        neg = [D[i, j] for j in range(8) if labels[j] != labels[i]]
        losses.append(max(0.0, float(max(pos)) - float(min(neg)) + 1.0))
    assert L.batch_hard_triplet(emb, labels, 1.0) == pytest.approx(sum(losses) / 8)


@torch.no_grad()
def test_distillation_and_preference_losses():
    s, t = rnd(N, K), rnd(N, K, requires_grad=False)
    T = 3.0
    pt, ps = torch.softmax(t / T, -1), torch.softmax(s.detach() / T, -1)
    manual = (pt * (pt.log() - ps.log())).sum(-1).mean() * T * T
    assert L.kl_distillation(s, t, T) == pytest.approx(float(manual))
    assert L.kl_distillation(s, t, T) == pytest.approx(float(F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T))
    rc, rr = rnd(N), rnd(N)
    assert L.bradley_terry(rc, rr) == pytest.approx(float(-torch.log(torch.sigmoid(rc.detach() - rr.detach())).mean()))
    pc, pr, qc, qr = rnd(N), rnd(N), rnd(N, requires_grad=False), rnd(N, requires_grad=False)
    loss, cr, rj, acc = L.dpo(pc, pr, qc, qr, beta=0.2)
    h = 0.2 * ((pc.detach() - qc) - (pr.detach() - qr))
    assert loss == pytest.approx(float(-torch.log(torch.sigmoid(h)).mean()))
    assert torch.allclose(cr, 0.2 * (pc.detach() - qc)) and torch.allclose(rj, 0.2 * (pr.detach() - qr))
    assert acc == pytest.approx(float((h > 0).double().mean()))


@torch.no_grad()
def test_nll_and_penalties_exclude_bias_and_norm():
    z, y = rnd(N, K), torch.randint(0, K, (N,))
    assert L.nll(F.log_softmax(z, -1), y) == pytest.approx(float(F.cross_entropy(z, y)))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)).double()
    w = model[0].weight.detach()
    assert l1_penalty(model) == pytest.approx(float(w.abs().sum()))
    assert l2_penalty(model) == pytest.approx(float(0.5 * (w**2).sum()))
    assert elastic_net(model, 0.1, 0.2) == pytest.approx(float(0.1 * w.abs().sum() + 0.1 * (w**2).sum()))


GRADCHECK = {
    "mse": lambda: (L.mse, (rnd(N, 1), torch.randn(N, 1, dtype=torch.float64))),
    "huber": lambda: (lambda p, y: L.huber(p, y, 0.5), (rnd(N, 1), torch.randn(N, 1, dtype=torch.float64) * 2)),
    "cross_entropy_soft": lambda: (lambda z, q: L.cross_entropy(z, q, 0.1), (rnd(N, K), torch.softmax(torch.randn(N, K, dtype=torch.float64), -1))),
    "bce": lambda: (lambda z, y: L.bce_with_logits(z, y, 2.0), (rnd(N, 1), torch.randint(0, 2, (N, 1)).double())),
    "focal": lambda: (lambda z, y: L.focal(z, y, 2.0, [0.3, 0.7, 0.5, 0.5]), (rnd(N, K), torch.randint(0, K, (N,)))),
    "dice": lambda: (L.dice, (rnd(2, 1, 3, 3), (torch.rand(2, 1, 3, 3) > 0.5).double())),
    "contrastive": lambda: (lambda a, b: L.contrastive(a, b, torch.tensor([1, 0, 1, 0, 1, 0]), 2.0), (rnd(N, 3), rnd(N, 3))),
    "triplet": lambda: (lambda a, p, n: L.triplet(a, p, n, 5.0), (rnd(N, 3), rnd(N, 3), rnd(N, 3))),
    "kl": lambda: (lambda s, t: L.kl_distillation(s, t, 2.0), (rnd(N, K), rnd(N, K))),
    "bradley_terry": lambda: (L.bradley_terry, (rnd(N), rnd(N))),
    "dpo": lambda: (lambda a, b, c, d: L.dpo(a, b, c, d, 0.3)[0], (rnd(N), rnd(N), rnd(N), rnd(N))),
}


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name):
    fn, args = GRADCHECK[name]()
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_builds_and_returns_a_finite_scalar(name):
    record = LOSSES.get(name)
    loss = record.target()
    task = record.flags["task"]
    tasks = task if isinstance(task, tuple) else (task,)
    if "regression" in tasks:
        out = loss(rnd(N, 1), torch.randn(N, 1, dtype=torch.float64))
    elif "classification" in tasks:
        z = rnd(N, K)
        out = loss(F.log_softmax(z, -1) if name == "nll" else z, torch.randint(0, K, (N,)))
    elif "binary" in tasks:
        out = loss(rnd(N, 1), torch.randint(0, 2, (N, 1)).double())
    elif tasks == ("any",):
        out = loss(rnd(N, K), rnd(N, K))
    elif tasks == ("pairs",):
        out = loss(rnd(N, 3), rnd(N, 3), torch.randint(0, 2, (N,))) if name == "contrastive" else loss(rnd(N, 3), rnd(N, 3), rnd(N, 3))
    else:
        out = loss(rnd(N), rnd(N)) if name == "bradley_terry" else loss(rnd(N), rnd(N), rnd(N), rnd(N))[0]
    assert out.dim() == 0 and math.isfinite(float(out.detach()))
    out.backward()
