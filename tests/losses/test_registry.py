"""Registry-wide sweep of the loss modules, the modules' own behaviour, and the docstring examples."""

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

from steepest.losses import (
    LOSSES,
    classification,
    distillation,
    metric,
    penalties,
    preference,
    regression,
    segmentation,
)

N, K = 6, 4
TASKS = {"classification", "regression", "binary", "multilabel", "any", "metric", "preference", "distillation", "language_modeling"}


def rnd(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def call(name, loss, task):
    """Feed `loss` the arguments its task flag promises."""
    if task == "regression":
        return loss(rnd(N, 1), torch.randn(N, dtype=torch.float64))
    if task == "classification":
        z = rnd(N, K)
        return loss(F.log_softmax(z, -1) if name == "nll" else z, torch.randint(0, K, (N,)))
    if task == "binary":
        return loss(rnd(N, 1), torch.randint(0, 2, (N,)).double())
    if task == "multilabel":
        return loss(rnd(N, K), torch.randint(0, 2, (N, K)).double())
    if task == "distillation":
        return loss(rnd(N, K), torch.randn(N, K, dtype=torch.float64))
    if task == "language_modeling":  # logits (N, T, V), next tokens (N, T)
        return loss(rnd(N, 3, K), torch.randint(0, K, (N, 3)))
    if task == "metric":  # as recipes build them: (embeddings, labels) of a batch
        return loss(rnd(N, 3), torch.randint(0, 3, (N,)))
    if name == "bradley_terry":
        return loss(rnd(N), rnd(N))
    return loss(rnd(N), rnd(N), rnd(N), rnd(N))[0]


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_builds_and_returns_a_finite_scalar(name):
    record = LOSSES.get(name)
    tasks = record.flags["task"] if isinstance(record.flags["task"], tuple) else (record.flags["task"],)
    assert set(tasks) <= TASKS and record.summary
    loss = record.target(**record.defaults)
    assert callable(loss) and repr(loss)
    for task in tasks:
        out = call(name, loss, task)
        assert out.dim() == 0 and out.dtype == torch.float64 and math.isfinite(float(out.detach()))
        out.backward()


def test_cross_entropy_module_takes_indices_and_mixup_soft_targets():
    ce = LOSSES.get("cross_entropy").target(label_smoothing=0.1, weight=[1.0, 2.0, 1.0, 1.0]).double()
    z, y = rnd(N, K).detach(), torch.randint(0, K, (N,))
    w = torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    assert ce(z, y) == pytest.approx(float(torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(z, y)))
    lam, perm = 0.7, torch.arange(N).flip(0)
    q = lam * F.one_hot(y, K).double() + (1 - lam) * F.one_hot(y[perm], K).double()
    assert ce(z, q) == pytest.approx(float(torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(z, q)))
    with pytest.raises(ValueError):
        LOSSES.get("cross_entropy").target(label_smoothing=1.0)


def test_class_weights_are_buffers_that_follow_the_module():
    focal = LOSSES.get("focal").target(alpha=[0.25, 0.75])
    bce = LOSSES.get("bce_with_logits").target(pos_weight=3.0)
    assert "alpha" in dict(focal.named_buffers()) and "pos_weight" in dict(bce.named_buffers())
    focal, bce = focal.double(), bce.double()
    assert focal.alpha.dtype == torch.float64
    z, y = rnd(N, 2), torch.randint(0, 2, (N,))
    assert float(focal(z, y).detach()) > 0 and float(bce(rnd(N, 1), y.double()).detach()) > 0


def test_focal_and_dice_modules_take_ignore_index_from_a_recipe():
    z, y = rnd(3, 4).detach(), torch.tensor([1, -100, 2])  # torch's ignore_index convention, as cross_entropy
    focal = LOSSES.get("focal").target(gamma=0.0)
    assert focal(z, y) == pytest.approx(float(LOSSES.get("cross_entropy").target()(z, y)))
    assert focal(z, y) == pytest.approx(float(F.cross_entropy(z, y, ignore_index=-100)))
    other = LOSSES.get("focal").target(gamma=0.0, ignore_index=3)
    assert other(z, torch.tensor([1, 3, 2])) == pytest.approx(float(F.cross_entropy(z, torch.tensor([1, 3, 2]), ignore_index=3)))
    zm, ym = rnd(2, 3, 4, 4).detach(), torch.randint(0, 3, (2, 4, 4))
    masked = ym.clone()
    masked[0, 0] = 255
    dice = LOSSES.get("dice").target(ignore_index=255)
    keep = masked != 255
    assert dice(zm, masked) == pytest.approx(float(LOSSES.get("dice").target()(zm.permute(0, 2, 3, 1)[keep], ym[keep])))
    assert "ignore_index=255" in repr(dice) and "ignore_index=-100" in repr(focal)


@pytest.mark.parametrize("shape", [(8,), (8, 3)])
def test_focal_normalizer_counts_kept_targets_so_accumulation_is_exact(shape):
    """The Engine weights micro-batch i by n_i / sum n (n = normalizer): with a different number of
    ignored targets per micro-batch, the weighted means are the one-batch mean."""
    focal = LOSSES.get("focal").target(gamma=2.0, alpha=[0.2, 0.3, 0.5] if len(shape) == 1 else 0.25)
    z = rnd(*shape, 3).detach() if len(shape) == 1 else rnd(*shape).detach()
    y = torch.randint(0, 3, shape) if len(shape) == 1 else torch.randint(0, 2, shape).double()
    y[0] = -100  # micro-batch one: 1 of 3 samples ignored; micro-batch two: 3 of 5
    y[4:7] = -100
    parts = [(z[:3], y[:3]), (z[3:], y[3:])]
    counts = [focal.normalizer(t) for _, t in parts]
    assert [int(c) for c in counts] == [int((t != -100).sum()) for _, t in parts]
    accumulated = sum(focal(zi, yi) * n / sum(counts) for (zi, yi), n in zip(parts, counts))
    assert float(accumulated) == pytest.approx(float(focal(z, y)), rel=1e-12)
    assert int(focal.normalizer(torch.full(shape, -100))) == 0


def test_batch_hard_triplet_module_takes_outputs_and_targets():
    loss = LOSSES.get("triplet").target(margin=0.5, batch_hard=True)
    out = loss(rnd(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert out.dim() == 0 and math.isfinite(float(out.detach()))


def test_dpo_module_returns_the_four_values():
    loss, chosen, rejected, accuracy = LOSSES.get("dpo").target(beta=0.1)(rnd(N), rnd(N), rnd(N), rnd(N))
    assert loss.dim() == 0 and chosen.shape == rejected.shape == (N,) and 0 <= float(accuracy) <= 1


@pytest.mark.parametrize("module", [classification, distillation, metric, penalties, preference, regression, segmentation],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_ignored_positions_accumulates_exactly(weighted):
    """Per-position targets (N, T) with padding (-100): the normalizer counts (or weighs) only the
    kept positions, so two micro-batches give torch's one-batch mean; class weights no longer index
    weight[-100]."""
    ce = LOSSES.get("cross_entropy").target(weight=[1.0, 3.0, 0.5] if weighted else None)
    z = rnd(6, 3, 5).detach()  # (N, K, T)
    y = torch.randint(0, 3, (6, 5))
    y[0, 2:] = -100
    y[4, :] = -100
    parts = [(z[:2], y[:2]), (z[2:], y[2:])]
    counts = [ce.normalizer(t) for _, t in parts]
    accumulated = sum(ce(zi, yi) * n / sum(counts) for (zi, yi), n in zip(parts, counts))
    weight = torch.tensor([1.0, 3.0, 0.5], dtype=z.dtype) if weighted else None
    assert float(accumulated) == pytest.approx(float(torch.nn.functional.cross_entropy(z, y, weight=weight)), rel=1e-12)
    plain = LOSSES.get("cross_entropy").target()
    assert plain.normalizer(torch.tensor([0, 1, -100])) is None  # plain class labels: weighted by samples, as before
    assert LOSSES.get("cross_entropy").target(ignore_index=7)(z[:, :, 0], torch.tensor([0, 7, 1, 2, 7, 1])) == pytest.approx(
        float(torch.nn.functional.cross_entropy(z[:, :, 0], torch.tensor([0, 7, 1, 2, 7, 1]), ignore_index=7)))
