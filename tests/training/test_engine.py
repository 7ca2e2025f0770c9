import copy

import pytest
import torch
from torch import nn

from steepest.training.engine import Engine


def make(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("k,sizes", [(4, [8, 8, 8, 8]), (3, [10, 10, 5])])
def test_accumulated_micro_batches_equal_one_big_batch(opt_name, k, sizes):
    torch.manual_seed(1)
    n = sum(sizes)
    x, y = torch.randn(n, 5, dtype=torch.float64), torch.randint(0, 3, (n,))
    models = [make(), make()]
    opts = [getattr(torch.optim, {"sgd": "SGD", "adam": "Adam"}[opt_name])(m.parameters(), lr=0.1) for m in models]
    engines = [Engine(m, o, nn.CrossEntropyLoss(), device=torch.device("cpu")) for m, o in zip(models, opts)]
    chunks = list(zip(torch.split(x, sizes), torch.split(y, sizes)))
    for _ in range(3):
        out_big = engines[0].train_step([(x, y)])
        out_acc = engines[1].train_step(chunks)
        assert torch.allclose(out_big.loss, out_acc.loss, atol=1e-12)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_nonfinite_loss_skips_the_step():
    model = make()
    before = copy.deepcopy(model.state_dict())
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), device=torch.device("cpu"))
    x = torch.randn(4, 5, dtype=torch.float64)
    x[0, 0] = float("nan")
    out = engine.train_step([(x, torch.zeros(4, dtype=torch.long))])
    assert out.skipped
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_clip_norm_reports_preclip_norm_and_clips(precision):
    """The reported norm is the pre-clip one; the step moves the weights by exactly clip_norm (SGD at
    lr 1 applies the clipped gradient); under fp16 the gradients are unscaled before clipping (a
    clip of the scaled gradients would move them by clip_norm / scale)."""
    torch.manual_seed(0)
    dtype = torch.float64 if precision == "fp32" else torch.float32
    model = nn.Linear(5, 3).to(dtype)
    clip = 1e-3
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=1.0), nn.MSELoss(), device=torch.device("cpu"), clip_norm=clip,
                    precision=precision)
    seen = {}

    def capture():  # after the unscale, before the clip
        seen["norm"] = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in model.parameters()))
        seen["grads"] = [p.grad.detach().clone() for p in model.parameters()]

    engine.before_optimizer_step = capture
    before = [p.detach().clone() for p in model.parameters()]
    out = engine.train_step([(torch.randn(8, 5, dtype=dtype), torch.randn(8, 3, dtype=dtype) * 0.3)])  # fp16: no overflow at scale 2^16
    assert not out.skipped and float(out.grad_norm) == pytest.approx(float(seen["norm"]), rel=1e-3) and float(out.grad_norm) > 10 * clip
    moved = [b - p.detach() for b, p in zip(before, model.parameters())]
    assert float(torch.sqrt(sum(m.double().pow(2).sum() for m in moved))) == pytest.approx(clip, rel=1e-3)
    for m, g in zip(moved, seen["grads"]):  # the direction of the gradient, scaled by clip / norm
        assert torch.allclose(m.double(), g.double() * clip / float(seen["norm"]), rtol=1e-3, atol=1e-9)


def test_fp16_uses_grad_scaler_and_bf16_autocast_on_cpu():
    model = nn.Linear(4, 2)
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), device=torch.device("cpu"), precision="bf16")
    out, _ = engine.forward_loss(torch.randn(3, 4), torch.zeros(3, dtype=torch.long))
    assert out.dtype == torch.bfloat16 and engine.scaler is None
    engine16 = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), device=torch.device("cpu"), precision="fp16")
    assert engine16.scaler is not None
    assert not engine16.train_step([(torch.randn(3, 4), torch.zeros(3, dtype=torch.long))]).skipped


class MaskedMSE:
    """Mean squared error over the samples whose mask (y[:, 1] > 0) is set: its mean divides by
    the number of unmasked samples, which it reports as `normalizer`; with none, 0 (not 0/0)."""

    def __call__(self, out, y):
        mask = y[:, 1] > 0
        return ((out[:, 0] - y[:, 0]) ** 2 * mask).sum() / mask.sum().clamp_min(1)

    def normalizer(self, y):
        return (y[:, 1] > 0).sum()


@pytest.mark.parametrize("loss_name", ["weighted_cross_entropy", "masked_mse"])
def test_accumulation_weights_micro_batches_by_the_losses_own_normalizer(loss_name):
    """k micro-batches equal one batch for losses whose mean is not over samples: a class-weighted
    cross entropy (divides by the summed weights of the targets' classes) and a masked mean (one
    micro-batch entirely masked: it must add nothing, not NaN)."""
    from steepest.losses.modules import CrossEntropy

    torch.manual_seed(3)
    sizes = [6, 6, 4]
    n = sum(sizes)
    x = torch.randn(n, 5, dtype=torch.float64)
    if loss_name == "weighted_cross_entropy":
        y = torch.tensor([0] * 6 + [1, 2] * 3 + [2] * 4)  # the micro-batches hold different classes
        loss_fn = CrossEntropy(weight=[0.2, 1.0, 5.0]).double()
    else:
        mask = torch.tensor([1.0] * 3 + [0.0] * 3 + [0.0] * 6 + [1.0] * 4)  # the second micro-batch: all masked
        y = torch.stack([torch.randn(n, dtype=torch.float64), mask], 1)
        loss_fn = MaskedMSE()
    models = [make(), make()]
    engines = [Engine(m, torch.optim.SGD(m.parameters(), lr=0.5), loss_fn, device=torch.device("cpu")) for m in models]
    chunks = list(zip(torch.split(x, sizes), torch.split(y, sizes)))
    for _ in range(3):
        big, acc = engines[0].train_step([(x, y)]), engines[1].train_step(chunks)
        assert not acc.skipped and torch.allclose(big.loss, acc.loss, atol=1e-12, rtol=0)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
