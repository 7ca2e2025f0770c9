import pytest
import torch
from torch import nn

from steepest.config import load_recipe
from steepest.optim import EMA, SWA
from steepest.optim.averaging import recompute_bn
from steepest.train.callbacks import StochasticWeightAveraging
from steepest.train.run import build_run


def snapshots(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(n)]


def test_swa_is_the_arithmetic_mean_of_snapshots():
    model = nn.Linear(2, 3, bias=False).double()
    swa = SWA(model)
    snaps = snapshots()
    for w in snaps:
        with torch.no_grad():
            model.weight.copy_(w)
        swa.update()
    out = nn.Linear(2, 3, bias=False).double()
    swa.copy_to(out)
    assert swa.n_averaged == 5
    assert torch.allclose(out.weight, torch.stack(snaps).mean(0), atol=1e-14)


def test_ema_matches_the_closed_form():
    decay = 0.8
    model = nn.Linear(2, 3, bias=False).double()
    snaps = snapshots(6, seed=1)
    with torch.no_grad():
        model.weight.copy_(snaps[0])
    ema = EMA(model, decay)  # starts from the current weights
    for w in snaps[1:]:
        with torch.no_grad():
            model.weight.copy_(w)
        ema.update()
    # w_ema = d^5 w_0 + sum_{k=1..5} (1 - d) d^(5-k) w_k ; the first update copies (torch's AveragedModel)
    expected = snaps[1].clone()
    for w in snaps[2:]:
        expected = decay * expected + (1 - decay) * w
    out = nn.Linear(2, 3, bias=False).double()
    ema.copy_to(out)
    assert torch.allclose(out.weight, expected, atol=1e-14)


def test_batchnorm_statistics_are_recomputed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    data = [torch.randn(50, 3) * 3 + 1 for _ in range(4)]
    model[1].running_mean.fill_(100.0)
    assert recompute_bn(model, data)
    per_batch = [model[0](x).detach() for x in data]
    # a cumulative average over the pass: the mean of the per-batch means and (unbiased) variances
    assert torch.allclose(model[1].running_mean, torch.stack([f.mean(0) for f in per_batch]).mean(0), atol=1e-5)
    assert torch.allclose(model[1].running_var, torch.stack([f.var(0) for f in per_batch]).mean(0), rtol=1e-5)
    assert not recompute_bn(nn.Linear(2, 2), data)


def test_swa_callback_averages_the_last_quarter_per_epoch():
    recipe = load_recipe("digits_mlp", ["data.subset=300", "trainer.max_epochs=8", "trainer.early_stopping=null",
                                        "callbacks=[{name: swa, start_fraction: 0.75}]"])
    run = build_run(recipe, None, console=False)
    swa_cb = next(cb for cb in run.trainer.callbacks if isinstance(cb, StochasticWeightAveraging))
    run.trainer.fit()
    assert swa_cb.swa.n_averaged == 2  # epochs 7 and 8 of 8 end after the 75% mark
    for a, b in zip(run.trainer.unwrapped_model.parameters(), swa_cb.swa.averaged.module.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("callback", ["{name: ema, decay: 0.9}", "{name: swa, start_fraction: 0.5, every_n_steps: 2}"])
def test_averaging_callbacks_survive_crash_and_resume(crash_resume, callback):
    a, b = crash_resume(["data.subset=300", "trainer.max_epochs=6", f"callbacks=[{callback}]"], 22)
    assert all(torch.equal(a[k], b[k]) for k in a)
