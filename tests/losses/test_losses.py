"""Every loss against its formula written out here, and torch.autograd.gradcheck in float64.

Targets in the gradcheck cases are non-differentiable inputs, drawn once, never inside the checked function."""

import pytest
import torch
import torch.nn.functional as F

from steepest.losses import elastic_net, l1_penalty, l2_penalty
from steepest.losses import functional as L

N, K = 6, 4
G = torch.Generator().manual_seed(0)


def rnd(*shape, requires_grad=True, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64, generator=G) * scale).requires_grad_(requires_grad)


def labels(*shape, k=K):
    return torch.randint(0, k, shape, generator=G)


def bits(*shape):
    return torch.randint(0, 2, shape, generator=G).double()


@torch.no_grad()
def test_regression_losses_formulas():
    p, y = rnd(N, 1), rnd(N, requires_grad=False, scale=2.0)
    e = p.reshape(-1) - y
    assert L.mse(p, y) == pytest.approx(float((e**2).mean()))
    assert L.mae(p, y) == pytest.approx(float(e.abs().mean()))
    assert L.mse(p, y, reduction="sum") == pytest.approx(float((e**2).sum()))
    d = 0.7
    hub = [0.5 * v * v if abs(v) <= d else d * (abs(v) - 0.5 * d) for v in e.tolist()]
    assert L.huber(p, y, d) == pytest.approx(sum(hub) / N)
    assert L.huber(p, y, d) == pytest.approx(float(F.huber_loss(p.reshape(-1), y, delta=d)))
    sl1 = [0.5 * v * v / d if abs(v) < d else abs(v) - 0.5 * d for v in e.tolist()]
    assert L.smooth_l1(p, y, d) == pytest.approx(sum(sl1) / N)
    assert L.smooth_l1(p, y, d) == pytest.approx(float(F.smooth_l1_loss(p.reshape(-1), y, beta=d)))
    with pytest.raises(ValueError, match="reduction"):
        L.mse(p, y, reduction="avg")


@torch.no_grad()
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cross_entropy_label_smoothing_equals_torch_and_formula(eps):
    z, y = rnd(N, K), labels(N)
    ours = L.cross_entropy(z, y, label_smoothing=eps)
    assert ours == pytest.approx(float(F.cross_entropy(z, y, label_smoothing=eps)), rel=1e-12)
    assert ours == pytest.approx(float(torch.nn.CrossEntropyLoss(label_smoothing=eps)(z, y)), rel=1e-12)
    q = F.one_hot(y, K).double() * (1 - eps) + eps / K
    manual = -(q * torch.log(torch.softmax(z, -1))).sum(-1).mean()
    assert ours == pytest.approx(float(manual))
    assert L.cross_entropy(z, q) == pytest.approx(float(manual))  # the same distribution as soft targets
    assert L.cross_entropy(z, F.one_hot(y, K).double(), label_smoothing=eps) == pytest.approx(float(manual))
    assert L.soft_targets(y, K, eps).double() == pytest.approx(q.numpy())


@torch.no_grad()
def test_cross_entropy_weights_spatial_and_float_indices():
    z, y = rnd(N, K), labels(N)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    logp = torch.log_softmax(z, -1)[torch.arange(N), y]
    assert L.cross_entropy(z, y, weight=w) == pytest.approx(float(-(w[y] * logp).sum() / w[y].sum()))
    q = torch.softmax(rnd(N, K, requires_grad=False), -1)
    assert L.cross_entropy(z, q, weight=w) == pytest.approx(float(-(q * w * torch.log_softmax(z, -1)).sum(-1).mean()))
    assert L.cross_entropy(z, y.double()) == pytest.approx(float(F.cross_entropy(z, y)))
    zs, ys = rnd(2, K, 3, 3), labels(2, 3, 3)
    manual = -torch.log_softmax(zs, 1).gather(1, ys[:, None]).mean()
    assert L.cross_entropy(zs, ys) == pytest.approx(float(manual))


@torch.no_grad()
def test_bce_with_logits_formula():
    z, y = rnd(N, 1), bits(N)
    p = torch.sigmoid(z.reshape(-1))
    for pw in (1.0, 3.0):
        manual = -(pw * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
        assert L.bce_with_logits(z, y, pw) == pytest.approx(float(manual))
    zm, ym, pw = rnd(N, K), bits(N, K), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    pm = torch.sigmoid(zm)
    manual = -(pw * ym * torch.log(pm) + (1 - ym) * torch.log(1 - pm)).mean()
    assert L.bce_with_logits(zm, ym, pw) == pytest.approx(float(manual))


@torch.no_grad()
def test_focal_formulas():
    g, a = 2.0, 0.25
    for z, y in ((rnd(N, 1), bits(N, 1)), (rnd(N), bits(N)), (rnd(N, K), bits(N, K))):  # binary and multilabel
        p = torch.sigmoid(z)
        pt = torch.where(y == 1, p, 1 - p)
        at = torch.where(y == 1, a, 1 - a)
        assert L.focal(z, y, g, a) == pytest.approx(float((-at * (1 - pt) ** g * torch.log(pt)).mean()))
        assert L.focal(z, y, 0.0) == pytest.approx(float(F.binary_cross_entropy_with_logits(z, y)))
    zm, ym = rnd(N, K), labels(N)
    alpha = [0.1, 0.2, 0.3, 0.4]
    pm = torch.softmax(zm, -1)[torch.arange(N), ym]
    manual = (-torch.tensor(alpha, dtype=torch.float64)[ym] * (1 - pm) ** g * torch.log(pm)).mean()
    assert L.focal(zm, ym, g, alpha) == pytest.approx(float(manual))
    assert L.focal(zm, ym, 0.0) == pytest.approx(float(F.cross_entropy(zm, ym)))
    zs, ys = rnd(2, K, 3), labels(2, 3)
    ps = torch.softmax(zs, 1).gather(1, ys[:, None]).squeeze(1)
    assert L.focal(zs, ys, g) == pytest.approx(float((-(1 - ps) ** g * torch.log(ps)).mean()))


@torch.no_grad()
def test_dice_and_bce_dice():
    z, y = rnd(2, 1, 5, 5), bits(2, 1, 5, 5)
    p = torch.sigmoid(z)
    manual = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    assert L.dice(z, y) == pytest.approx(float(manual))
    assert L.dice(z.reshape(2, 25)[:, 0], y.reshape(2, 25)[:, 0]) == pytest.approx(
        float(1 - (2 * (p.reshape(2, 25)[:, 0] * y.reshape(2, 25)[:, 0]).sum() + 1) / (p.reshape(2, 25)[:, 0].sum() + y.reshape(2, 25)[:, 0].sum() + 1)))
    assert L.bce_dice(z, y, 0.3) == pytest.approx(0.3 * float(F.binary_cross_entropy_with_logits(z, y)) + 0.7 * float(manual))
    zm, ym = rnd(2, 3, 4, 4), labels(2, 4, 4, k=3)
    pm, oh = torch.softmax(zm, 1), F.one_hot(ym, 3).permute(0, 3, 1, 2).double()
    per = [1 - (2 * (pm[:, c] * oh[:, c]).sum() + 1) / (pm[:, c].sum() + oh[:, c].sum() + 1) for c in range(3)]
    assert L.dice(zm, ym) == pytest.approx(float(sum(per) / 3))
    zl, yl = rnd(2, 3, 4, 4), bits(2, 3, 4, 4)  # multilabel masks: sigmoid per channel
    pl = torch.sigmoid(zl)
    per = [1 - (2 * (pl[:, c] * yl[:, c]).sum() + 0.5) / (pl[:, c].sum() + yl[:, c].sum() + 0.5) for c in range(3)]
    assert L.dice(zl, yl, smooth=0.5) == pytest.approx(float(sum(per) / 3))


@torch.no_grad()
def test_focal_ignore_index_skips_targets_as_torch_cross_entropy_does():
    g = 2.0
    zm, ym = rnd(N, K), labels(N)
    ym[[1, 4]] = -100  # torch's default ignore_index
    keep = ym != -100
    assert L.focal(zm, ym, 0.0) == pytest.approx(float(F.cross_entropy(zm, ym)), rel=1e-12)  # torch ignores -100 too
    assert torch.allclose(L.focal(zm, ym, 0.0, reduction="none"), F.cross_entropy(zm, ym, reduction="none"))
    assert L.focal(zm, ym, 0.0, reduction="sum") == pytest.approx(float(F.cross_entropy(zm, ym, reduction="sum")))
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    pm = torch.softmax(zm[keep], -1)[torch.arange(int(keep.sum())), ym[keep]]
    manual = (-alpha[ym[keep]] * (1 - pm) ** g * torch.log(pm)).sum() / keep.sum()  # mean over the kept targets only
    assert L.focal(zm, ym, g, alpha.tolist()) == pytest.approx(float(manual))
    zs, ys = rnd(2, K, 3), labels(2, 3)  # spatial targets, another ignore_index
    ys[0, 1] = ys[1, 2] = 255
    assert L.focal(zs, ys, 0.0, ignore_index=255) == pytest.approx(float(F.cross_entropy(zs, ys, ignore_index=255)), rel=1e-12)
    z, y = rnd(N, K), bits(N, K)  # sigmoid form: ignored elements of a multilabel target
    y[0, 1] = y[3, 2] = y[5, 0] = -100
    keep = y != -100
    p = torch.sigmoid(z)
    pt, at = torch.where(y == 1, p, 1 - p), torch.where(y == 1, 0.25, 0.75)
    assert L.focal(z, y, g, 0.25) == pytest.approx(float((-at * (1 - pt) ** g * torch.log(pt))[keep].mean()))
    assert L.focal(z, y, 0.0) == pytest.approx(float(F.binary_cross_entropy_with_logits(z[keep], y[keep])))


@torch.no_grad()
def test_dice_ignore_index_leaves_ignored_pixels_out_of_every_sum():
    zm, ym = rnd(2, 3, 4, 4), labels(2, 4, 4, k=3)
    ym[0, :2] = -100
    ym[1, 3, 3] = -100
    keep = ym != -100
    pm, oh = torch.softmax(zm, 1), F.one_hot(ym.clamp_min(0), 3).permute(0, 3, 1, 2).double()
    per = [1 - (2 * (pm[:, c] * oh[:, c])[keep].sum() + 1) / (pm[:, c][keep].sum() + oh[:, c][keep].sum() + 1) for c in range(3)]
    assert L.dice(zm, ym) == pytest.approx(float(sum(per) / 3))
    assert L.dice(zm, ym) == pytest.approx(float(L.dice(zm.permute(0, 2, 3, 1)[keep], ym[keep])))  # = Dice of the kept pixels alone
    ym[ym == -100] = 255
    assert L.dice(zm, ym, ignore_index=255) == pytest.approx(float(sum(per) / 3))
    z, y = rnd(2, 1, 5, 5), bits(2, 1, 5, 5)  # sigmoid form: a binary mask with an ignored band
    y[0, 0, 0] = -100
    keep = y != -100
    p = torch.sigmoid(z)
    manual = 1 - (2 * (p * y)[keep].sum() + 0.5) / (p[keep].sum() + y[keep].sum() + 0.5)
    assert L.dice(z, y, smooth=0.5) == pytest.approx(float(manual))


@pytest.mark.parametrize("smooth", [1.0, 0.0])
def test_focal_and_dice_with_every_target_ignored_are_zero_with_a_gradient(smooth):
    """torch's mean over no target is nan (0/0); these losses give 0 and a zero gradient instead."""
    cases = [(lambda z, y: L.focal(z, y), rnd(N, K), torch.full((N,), -100)),
             (lambda z, y: L.focal(z, y, 2.0, 0.25), rnd(N, K), torch.full((N, K), -100.0)),
             (lambda z, y: L.dice(z, y, smooth), rnd(2, 3, 2, 2), torch.full((2, 2, 2), -100)),
             (lambda z, y: L.dice(z, y, smooth), rnd(2, 1, 2, 2), torch.full((2, 1, 2, 2), -100.0))]
    for fn, z, y in cases:
        out = fn(z, y)
        out.backward()
        assert float(out.detach()) == 0.0 and z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))


@torch.no_grad()
def test_metric_learning_losses():
    a, b = rnd(N, 3), rnd(N, 3)
    sim = torch.tensor([1, 0, 1, 0, 0, 1])
    d = (a - b).norm(dim=-1)
    manual = (sim * d**2 + (1 - sim) * torch.clamp(1.5 - d, min=0) ** 2).mean()
    assert L.contrastive(a, b, sim, 1.5) == pytest.approx(float(manual))
    n = rnd(N, 3)
    manual = torch.clamp((a - b).norm(dim=-1) - (a - n).norm(dim=-1) + 0.5, min=0).mean()
    assert L.triplet(a, b, n, 0.5) == pytest.approx(float(manual))
    assert L.triplet(a, b, n, 0.5) == pytest.approx(float(F.triplet_margin_loss(a, b, n, margin=0.5, eps=0)), rel=1e-6)
    emb, lab = rnd(9, 3), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 3])  # class 3 has no positive: not an anchor
    D = torch.cdist(emb, emb)
    losses = []
    for i in range(8):
        pos = [D[i, j] for j in range(9) if lab[j] == lab[i] and j != i]
        neg = [D[i, j] for j in range(9) if lab[j] != lab[i]]
        losses.append(max(0.0, float(max(pos)) - float(min(neg)) + 1.0))
    assert L.batch_hard_triplet(emb, lab, 1.0) == pytest.approx(sum(losses) / 8)


def test_batch_hard_triplet_without_valid_anchors_is_zero_and_differentiable():
    emb = rnd(3, 2)
    loss = L.batch_hard_triplet(emb, torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(emb.grad == 0)


@torch.no_grad()
def test_distillation_and_preference_losses():
    s, t = rnd(N, K), rnd(N, K)
    T = 3.0
    pt, ps = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    manual = (pt * (pt.log() - ps.log())).sum(-1).mean() * T * T
    assert L.kl_distillation(s, t, T) == pytest.approx(float(manual))
    assert L.kl_distillation(s, t, T) == pytest.approx(
        float(F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T))
    rc, rr = rnd(N), rnd(N)
    assert L.bradley_terry(rc, rr) == pytest.approx(float(-torch.log(torch.sigmoid(rc - rr)).mean()))
    assert L.bradley_terry(rc, rr, 0.5) == pytest.approx(float(-torch.log(torch.sigmoid(rc - rr - 0.5)).mean()))
    pc, pr, qc, qr = rnd(N), rnd(N), rnd(N), rnd(N)
    loss, cr, rj, acc = L.dpo(pc, pr, qc, qr, beta=0.2)
    h = 0.2 * ((pc - qc) - (pr - qr))
    assert loss == pytest.approx(float(-torch.log(torch.sigmoid(h)).mean()))
    assert torch.allclose(cr, 0.2 * (pc - qc)) and torch.allclose(rj, 0.2 * (pr - qr))
    assert acc == pytest.approx(float((h > 0).double().mean()))
    smoothed = L.dpo(pc, pr, qc, qr, beta=0.2, label_smoothing=0.1)[0]
    assert smoothed == pytest.approx(float((-0.9 * torch.log(torch.sigmoid(h)) - 0.1 * torch.log(torch.sigmoid(-h))).mean()))


def test_dpo_rewards_are_detached():
    pc = rnd(N)
    loss, cr, rj, acc = L.dpo(pc, rnd(N), rnd(N, requires_grad=False), rnd(N, requires_grad=False))
    assert loss.requires_grad and not (cr.requires_grad or rj.requires_grad or acc.requires_grad)


def test_nll_and_penalties_exclude_bias_and_norm():
    z, y = rnd(N, K, requires_grad=False), labels(N)
    assert L.nll(F.log_softmax(z, -1), y) == pytest.approx(float(F.cross_entropy(z, y)))
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3), torch.nn.Flatten(), torch.nn.Linear(3, 2),
                                torch.nn.LayerNorm(2)).double()
    ws = [model[0].weight, model[3].weight]
    with torch.no_grad():
        assert l1_penalty(model) == pytest.approx(float(sum(w.abs().sum() for w in ws)))
        assert l2_penalty(model) == pytest.approx(float(0.5 * sum((w**2).sum() for w in ws)))
        assert elastic_net(model, 0.1, 0.2) == pytest.approx(float(sum(0.1 * w.abs().sum() + 0.1 * (w**2).sum() for w in ws)))
    elastic_net(model, 0.1, 0.2).backward()
    for w in ws:  # d/dw [l1 |w| + l2 w^2 / 2] = l1 sign(w) + l2 w
        assert torch.allclose(w.grad, 0.1 * w.detach().sign() + 0.2 * w.detach())
    assert model[0].bias.grad is None and model[1].weight.grad is None and model[4].weight.grad is None
    assert float(l2_penalty(torch.nn.LayerNorm(3))) == 0.0


def test_l2_lambda_is_sgd_weight_decay_on_the_weights_and_half_a_sum_of_squares_coefficient():
    """The documented convention: l2 = lambda in (lambda/2) sum w^2 over weights only, so an SGD
    step on loss + lambda * l2_penalty is SGD(weight_decay=lambda) on the weights (biases undecayed),
    and a reference's lambda_2 sum p^2 is l2 = 2 lambda_2 on the weights."""
    lam, lr = 0.3, 0.1
    x, y = rnd(8, 3, requires_grad=False), rnd(8, 2, requires_grad=False)
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2).double()
    b = torch.nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    (L.mse(a(x), y) + lam * l2_penalty(a)).backward()
    torch.optim.SGD(a.parameters(), lr=lr).step()
    L.mse(b(x), y).backward()
    torch.optim.SGD([{"params": [b.weight], "weight_decay": lam}, {"params": [b.bias]}], lr=lr).step()
    assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias)
    with torch.no_grad():
        assert float(lam * l2_penalty(a)) == pytest.approx(float((lam / 2) * (a.weight**2).sum()))


GRADCHECK = {
    "mse": lambda: (L.mse, (rnd(N, 1), rnd(N, 1))),
    "mae": lambda: (L.mae, (rnd(N, 1), rnd(N, 1))),
    "huber": lambda: (lambda p, y: L.huber(p, y, 0.5), (rnd(N, 1), rnd(N, 1, scale=2.0))),
    "smooth_l1": lambda: (lambda p, y: L.smooth_l1(p, y, 0.5), (rnd(N, 1), rnd(N, 1, scale=2.0))),
    "cross_entropy_index": lambda: (lambda z, y: L.cross_entropy(z, y, 0.1), (rnd(N, K), labels(N))),
    "cross_entropy_soft": lambda: (lambda z, q: L.cross_entropy(z, q, 0.1), (rnd(N, K), torch.softmax(rnd(N, K), -1))),
    "nll": lambda: (lambda z, y: L.nll(F.log_softmax(z, -1), y), (rnd(N, K), labels(N))),
    "bce": lambda: (lambda z, y: L.bce_with_logits(z, y, 2.0), (rnd(N, 1), bits(N, 1))),
    "focal_multiclass": lambda: (lambda z, y: L.focal(z, y, 2.0, [0.3, 0.7, 0.5, 0.5]), (rnd(N, K), labels(N))),
    "focal_multilabel": lambda: (lambda z, y: L.focal(z, y, 1.5, 0.25), (rnd(N, K), bits(N, K))),
    "dice_binary": lambda: (lambda z, y: L.dice(z, y), (rnd(2, 1, 3, 3), bits(2, 1, 3, 3))),
    "dice_multiclass": lambda: (lambda z, y: L.dice(z, y), (rnd(2, 3, 3, 3), labels(2, 3, 3, k=3))),
    "bce_dice": lambda: (lambda z, y: L.bce_dice(z, y, 0.4), (rnd(2, 1, 3, 3), bits(2, 1, 3, 3))),
    "focal_multiclass_ignored": lambda: (lambda z, y: L.focal(z, y, 2.0, [0.3, 0.7, 0.5, 0.5]),
                                         (rnd(N, K), torch.tensor([0, -100, 3, 1, -100, 2]))),
    "dice_multiclass_ignored": lambda: (lambda z, y: L.dice(z, y),
                                        (rnd(2, 3, 3, 3), torch.where(torch.arange(9).reshape(3, 3) % 4 == 0, -100, labels(2, 3, 3, k=3)))),
    "contrastive": lambda: (lambda a, b: L.contrastive(a, b, torch.tensor([1, 0, 1, 0, 1, 0]), 2.0), (rnd(N, 3), rnd(N, 3))),
    "triplet": lambda: (lambda a, p, n: L.triplet(a, p, n, 5.0), (rnd(N, 3), rnd(N, 3), rnd(N, 3))),
    "batch_hard_triplet": lambda: (lambda e: L.batch_hard_triplet(e, torch.tensor([0, 0, 1, 1, 2, 2]), 3.0), (rnd(N, 3),)),
    "kl": lambda: (lambda s, t: L.kl_distillation(s, t, 2.0), (rnd(N, K), rnd(N, K))),
    "bradley_terry": lambda: (L.bradley_terry, (rnd(N), rnd(N))),
    "dpo": lambda: (lambda a, b, c, d: L.dpo(a, b, c, d, 0.3, 0.1)[0], (rnd(N), rnd(N), rnd(N), rnd(N))),
}


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name):
    fn, args = GRADCHECK[name]()
    assert torch.autograd.gradcheck(fn, args)


def test_multiclass_focal_keeps_the_softmax_form_for_probability_targets():
    """One-hot targets give the index form's value; soft targets (mixup) the written-out
    -sum_k q_k alpha_k (1 - p_k)^gamma log p_k; without multiclass=True (N, K) targets are sigmoid."""
    z = rnd(6, 4).detach()
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4])
    onehot = F.one_hot(y, 4).double()
    index_form = L.focal(z, y, gamma=2.0, alpha=alpha)
    assert float(L.focal(z, onehot, gamma=2.0, alpha=alpha, multiclass=True)) == pytest.approx(float(index_form), rel=1e-12)
    q = torch.softmax(rnd(6, 4).detach(), 1)
    p = torch.softmax(z, 1)
    by_hand = -(q * alpha.double() * (1 - p) ** 2 * torch.log(p)).sum(1).mean()
    assert float(L.focal(z, q, gamma=2.0, alpha=alpha, multiclass=True)) == pytest.approx(float(by_hand), rel=1e-12)
    assert float(L.focal(z, onehot, gamma=2.0)) != pytest.approx(float(index_form))  # auto: (N, K) 0/1 targets are multilabel


def test_a_recipe_s_focal_loss_follows_the_task():
    from steepest.config import load_recipe
    from steepest.config.build import build_loss

    recipe = load_recipe("digits_mlp", ["loss={name: focal, gamma: 2.0}", "batch_transform={name: mixup}"])
    assert build_loss(recipe, "classification").multiclass is True
    assert build_loss(recipe, "multilabel").multiclass is False
