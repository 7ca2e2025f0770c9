"""SWA and EMA against their closed forms; BatchNorm statistics recomputed; state round-trips."""

import copy

import pytest
import torch
from torch import nn

from steepest.optim import EMA, SWA
from steepest.optim.averaging import recompute_bn


def snapshots(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(n)]


def set_weight(model, w):
    with torch.no_grad():
        model.weight.copy_(w)


def test_swa_is_the_arithmetic_mean_of_the_due_snapshots():
    """total 20 steps, start 75% -> step 15, every 2 steps: snapshots at steps 15, 17, 19 only."""
    model = nn.Linear(2, 3, bias=False).double()
    swa = SWA(model, total_steps=20, every_n_steps=2)
    assert swa.start_step == 15
    snaps = snapshots(20)
    taken = []
    for step, w in enumerate(snaps, start=1):
        set_weight(model, w)
        if swa.update(model, step):
            taken.append(step)
    assert taken == [15, 17, 19] and swa.n_averaged == 3
    expected = torch.stack([snaps[s - 1] for s in taken]).mean(0)
    assert torch.allclose(swa.averaged_model.weight, expected, atol=1e-14)
    out = nn.Linear(2, 3, bias=False).double()
    swa.copy_to(out)
    assert torch.equal(out.weight, swa.averaged_model.weight)


def test_swa_without_a_schedule_averages_every_update():
    model = nn.Linear(2, 3, bias=False).double()
    swa = SWA(model)
    snaps = snapshots()
    for w in snaps:
        set_weight(model, w)
        assert swa.update()
    assert torch.allclose(swa.averaged_model.weight, torch.stack(snaps).mean(0), atol=1e-14)


def test_ema_matches_the_closed_form():
    decay = 0.8
    model = nn.Linear(2, 3, bias=False).double()
    snaps = snapshots(6, seed=1)
    ema = EMA(model, decay)
    for step, w in enumerate(snaps):
        set_weight(model, w)
        ema.update(model, step)
    # the first update takes the weights; then w_ema = sum_k (1 - d) d^(5-k) w_k + d^4 w_1
    expected = decay ** 5 * snaps[0] + sum((1 - decay) * decay ** (5 - k) * snaps[k] for k in range(1, 6))
    assert torch.allclose(ema.averaged_model.weight, expected, atol=1e-14)


def test_ema_warmup_uses_the_smaller_early_decay():
    model = nn.Linear(2, 3, bias=False).double()
    snaps = snapshots(4, seed=2)
    ema = EMA(model, 0.99, warmup=True)
    expected = None
    for step, w in enumerate(snaps):
        set_weight(model, w)
        ema.update(model)
        d = min(0.99, (1 + step) / (10 + step))
        expected = w.clone() if expected is None else d * expected + (1 - d) * w
    assert torch.allclose(ema.averaged_model.weight, expected, atol=1e-14)


@pytest.mark.parametrize("kind", ["swa", "ema"])
def test_state_dict_round_trip_continues_identically(kind):
    make = (lambda m: SWA(m, total_steps=8, start_fraction=0.5)) if kind == "swa" else (lambda m: EMA(m, 0.7, warmup=True))
    snaps = snapshots(8, seed=3)
    model = nn.Linear(2, 3, bias=False).double()
    straight = make(model)
    for step, w in enumerate(snaps, start=1):
        set_weight(model, w)
        straight.update(model, step)
    first = make(model)
    for step, w in enumerate(snaps[:5], start=1):
        set_weight(model, w)
        first.update(model, step)
    resumed = make(nn.Linear(2, 3, bias=False).double())
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    for step, w in enumerate(snaps[5:], start=6):
        set_weight(model, w)
        resumed.update(model, step)
    assert torch.equal(straight.averaged_model.weight, resumed.averaged_model.weight)


def test_batchnorm_statistics_are_recomputed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    data = [torch.randn(50, 3) * 3 + 1 for _ in range(4)]
    model[1].running_mean.fill_(100.0)
    model.eval()
    assert recompute_bn(model, [(x, None) for x in data])  # (input, target) pairs are accepted
    assert not model.training
    per_batch = [model[0](x).detach() for x in data]
    # a cumulative average over the pass: the mean of the per-batch means and (unbiased) variances
    assert torch.allclose(model[1].running_mean, torch.stack([f.mean(0) for f in per_batch]).mean(0), atol=1e-5)
    assert torch.allclose(model[1].running_var, torch.stack([f.var(0) for f in per_batch]).mean(0), rtol=1e-5)
    assert not recompute_bn(nn.Linear(2, 2), data)


def test_swa_recomputes_the_averaged_models_batchnorm():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    swa = SWA(model)
    swa.update(model)
    with torch.no_grad():
        model[0].weight.mul_(3)
    swa.update(model)
    data = [torch.randn(40, 3) for _ in range(3)]
    assert swa.recompute_bn(data)
    avg = swa.averaged_model
    feats = [avg[0](x).detach() for x in data]
    assert torch.allclose(avg[1].running_mean, torch.stack([f.mean(0) for f in feats]).mean(0), atol=1e-6)
    assert torch.allclose(avg[0].weight, model[0].weight * 2 / 3, atol=1e-6)  # (w + 3w) / 2 = (3w) * 2/3


def test_swa_callback_averages_the_last_epochs_weights():
    """SWA (Izmailov et al. 2018): the arithmetic mean of the weights at the end of each epoch after
    start_fraction of training, checked against snapshots taken at every epoch end; the mean is what
    the model holds after fit."""
    from steepest.config import load_recipe
    from steepest.run import build_run
    from steepest.training.callbacks import StochasticWeightAveraging
    from steepest.training.events import Callback

    snapshots = []

    class Snapshot(Callback):
        name = "snapshot"

        def on_epoch_end(self, trainer):
            snapshots.append([p.detach().clone() for p in trainer.unwrapped_model.parameters()])

    recipe = load_recipe("digits_mlp", ["data.subset=200", "trainer.max_epochs=8", "trainer.early_stopping=null",
                                        "callbacks=[{name: swa, start_fraction: 0.5}]"])
    run = build_run(recipe, None, console=False, extra_callbacks=[Snapshot()])
    swa_cb = next(cb for cb in run.trainer.callbacks if isinstance(cb, StochasticWeightAveraging))
    run.trainer.fit()
    n = swa_cb.swa.n_averaged
    assert len(snapshots) == 8 and n == 4  # epochs 5-8 end after the 50% mark
    expected = [torch.stack(ws).mean(0) for ws in zip(*snapshots[-n:])]
    for a, m, e in zip(swa_cb.swa.averaged_model.parameters(), run.trainer.unwrapped_model.parameters(), expected):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-7) and torch.equal(a, m)
    assert not torch.allclose(expected[0], snapshots[-1][0])  # the average is not just the last weights


@pytest.mark.parametrize("name", ["ema", "swa"])
def test_averaging_a_model_with_integer_buffers(name, tmp_path):
    """BatchNorm's num_batches_tracked is a Long buffer: it is copied, never lerped (that crashed at
    step 2 with NotImplementedError: "lerp_kernel_scalar" not implemented for 'Long')."""
    from steepest.cli import main

    args = ["train", "--run-dir", str(tmp_path / "r"), "-q", "--set", "model.norm=batchnorm", "--set", "trainer.max_steps=12",
            "--set", "trainer.max_epochs=null", "--set", f"callbacks=[{{name: {name}}}]", "--set", "checkpoint.enabled=false"]
    assert main(args) == 0
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.5)
    for _ in range(3):
        model(torch.randn(8, 3))
        ema.update(model)
    tracked = dict(ema.averaged_model.named_buffers())["1.num_batches_tracked"]
    assert tracked.dtype == torch.long and int(tracked) == 3  # the model's count, copied
