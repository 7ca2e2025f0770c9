import math

import numpy as np
import pytest
import torch

from steepest.cli import main
from steepest.config import load_recipe
from steepest.run import build_run
from steepest.tune.lr_finder import (
    exponential_lrs,
    grid_lrs,
    grid_search,
    range_test,
    smooth_losses,
    suggest_min10,
    suggest_steepest,
    suggest_valley,
)


def synthetic_curve():
    """Flat, then a descent centred on 1e-3, a minimum near 1e-1, then a blow-up."""
    lrs = exponential_lrs(1e-6, 1.0, 61)
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 4, 0)
    return lrs, loss.tolist()


def test_exponential_and_grid_lrs():
    lrs = exponential_lrs(1e-7, 10, 9)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)
    assert grid_lrs() == pytest.approx([10**e for e in np.arange(-5, 0.01, 0.5)])


def test_smoothing_is_bias_corrected():
    assert smooth_losses([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])
    s = smooth_losses([1.0, 2.0], beta=0.5)
    assert s[1] == pytest.approx((0.5 * 0.5 * 1 + 0.5 * 2) / (1 - 0.25))
    assert smooth_losses([1.0, math.nan])[1] == math.inf


def test_suggestions_on_a_known_curve():
    lrs, loss = synthetic_curve()
    assert suggest_steepest(lrs, loss) == pytest.approx(1e-3, rel=0.6)
    lo = lrs[int(np.argmin(loss))]
    assert suggest_min10(lrs, loss) == pytest.approx(lo / 10)
    assert 1e-4 < suggest_valley(lrs, loss) < lo


def small_trainer(**overrides):
    sets = [f"{k}={v}" for k, v in {"data.subset": 400, "model.dropout": 0.3, **overrides}.items()]
    return build_run(load_recipe("digits_mlp", sets), None, console=False).trainer


def test_range_test_restores_every_piece_of_state():
    trainer = small_trainer()
    trainer.fit  # noqa: B018  (untouched)
    model_before = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    opt_before = trainer.optimizer.state_dict()
    lr_before = [g["lr"] for g in trainer.optimizer.param_groups]
    rng_before = torch.get_rng_state().clone()
    state_before = trainer.state.to_dict()
    result = range_test(trainer, num_steps=40)
    assert len(result.lrs) >= 10 and result.suggested_lr > 0
    for k, v in trainer.unwrapped_model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    assert trainer.optimizer.state_dict()["state"] == opt_before["state"] == {}
    assert [g["lr"] for g in trainer.optimizer.param_groups] == lr_before
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert trainer.state.to_dict() == state_before


@pytest.mark.parametrize("mode", ["range", "grid"])
def test_a_later_fit_is_unchanged_by_the_finder_with_mixup_and_augmentation(mode):
    """Every generator of the run (mixup's included) is restored: finder then fit == fit alone,
    bit for bit (it differed by up to 8.9e-2 when mixup's generator was left advanced)."""
    sets = {"batch_transform": "{name: mixup, alpha: 0.4}", "trainer.max_steps": 15, "trainer.max_epochs": "null"}

    def fitted(with_finder):
        trainer = small_trainer(**sets)
        if with_finder:
            range_test(trainer, num_steps=12) if mode == "range" else grid_search(trainer, lrs=[1e-3, 1e-2], steps_per_lr=4)
        trainer.fit()
        return trainer.unwrapped_model.state_dict()

    plain, after = fitted(False), fitted(True)
    assert all(torch.equal(plain[k], after[k]) for k in plain)


def test_range_test_stops_on_divergence_and_nan():
    trainer = small_trainer()
    result = range_test(trainer, start_lr=1e-4, end_lr=1e6, num_steps=80)
    assert result.stopped_early and len(result.lrs) < 80
    smoothed = result.smoothed
    # it stopped at the first step whose smoothed loss diverged (non-finite, or 4x the best before it), not later
    last = smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(smoothed[:-1]), smoothed[-3:]
    assert all(s <= 4 * min(smoothed[: i + 1]) for i, s in enumerate(smoothed[:-1])), smoothed
    # every suggestion is a rate the sweep tried before it diverged, where the loss was below where it started
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    assert result.suggestions["min10"] == pytest.approx(result.lrs[lowest] / 10, rel=1e-9)  # a tenth of the minimum's lr
    for name, lr in result.suggestions.items():
        lr = lr * 10 if name == "min10" else lr
        at = min(range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / lr)))
        assert lr == pytest.approx(result.lrs[at], rel=1e-9) and at < len(result.lrs) - 1, (name, lr, result.lrs[-3:])
        assert math.isfinite(smoothed[at]) and smoothed[at] < smoothed[0], (name, lr, smoothed[at], smoothed[0])


def test_grid_mode_picks_largest_stable_lr():
    trainer = small_trainer(**{"optimizer.name": "sgd"})
    result = grid_search(trainer, lrs=[1e-3, 1e-1, 1e3, 1e5], steps_per_lr=8)
    assert result.suggested_lr == pytest.approx(1e-1)


def test_find_lr_cli_prints_suggestion_and_writes_plot(tmp_path, capsys):
    code = main(["find-lr", "--set", "data.subset=300", "--steps", "30", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("suggested lr: ")
    assert (tmp_path / "lr_finder.json").exists() and (tmp_path / "lr_finder.png").stat().st_size > 1000


def test_compare_cli_same_budget_table_and_plot(tmp_path, capsys):
    code = main(["compare", "--optimizers", "sgd,adam", "--set", "trainer.max_epochs=2", "--set", "trainer.early_stopping=null",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "| sgd |" in out and "| adam |" in out
    assert (tmp_path / "comparison.png").exists()
    import json

    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert {r["optimizer"] for r in rows} == {"sgd", "adam"}
    steps = [json.loads((tmp_path / n / "summary.json").read_text())["steps"] for n in ("sgd", "adam")]
    assert steps[0] == steps[1]
    # each at its own default (not the recipe's lr 3e-3), and the table says so
    assert [(r["lr"], r["lr_source"]) for r in rows] == [(1e-3, "default"), (1e-3, "default")]
    assert rows[1]["val_loss"] < rows[0]["val_loss"]  # adam beats plain sgd over two epochs


def test_compare_rejects_unknown_optimizer_before_training(tmp_path, capsys):
    assert main(["compare", "--optimizers", "sgd,adamm", "--out", str(tmp_path)]) == 2
    assert "did you mean 'adam'" in capsys.readouterr().err
    assert not (tmp_path / "sgd").exists()


def test_grid_plot_keeps_every_point_within_the_axes_when_the_loss_nears_zero():
    """The grid-mode plot showed 2 of 11 points when the loss reached 1e-8 (linear limits around
    the smallest values); every grid point must be inside the axes."""
    pytest.importorskip("matplotlib")
    from steepest.tune.lr_finder import LRFinderResult, figure

    lrs = grid_lrs()
    finals = [2.3, 2.0, 1.2, 0.4, 0.05, 1e-3, 1e-5, 1e-7, 1e-8, 3e-8, 2.0]
    result = LRFinderResult("grid", lrs, finals, finals, chosen="largest_stable", suggestions={"largest_stable": 1e-2})
    fig = figure(result)
    (ax,) = fig.axes
    lo, hi = ax.get_ylim()
    assert all(lo <= v <= hi for v in finals) and ax.get_yscale() == "log"
    x_lo, x_hi = ax.get_xlim()
    assert all(x_lo <= lr <= x_hi for lr in lrs)


def _valley_reference(lrs, losses):
    """fastai's valley written out: trim 10% / 5 points, longest decreasing subsequence by O(n^2)
    dynamic programming, then the index first + span/3 + span/6."""
    lrs, losses = lrs[len(lrs) // 10: len(lrs) - 5], losses[len(losses) // 10: len(losses) - 5]
    best = []  # best[i]: the longest decreasing subsequence (as indices) ending at i
    for i, value in enumerate(losses):
        tails = [best[j] for j in range(i) if losses[j] > value]
        best.append(max(tails, key=len, default=[]) + [i])
    longest = max(best, key=len)
    span = longest[-1] - longest[0]
    return lrs[longest[0] + int(span / 3) + int(span / 6)]


def test_valley_is_fastais_rule_and_one_bump_does_not_move_it():
    lrs = exponential_lrs(1e-7, 10, 100)
    x = np.log10(lrs)
    loss = (2.3 - 1.5 / (1 + np.exp(-(x + 3) * 2)) + np.where(x > -0.5, (x + 0.5) ** 2 * 3, 0)).tolist()
    smooth = suggest_valley(lrs, loss)
    assert smooth == pytest.approx(_valley_reference(lrs, loss)) and 1e-4 < smooth < 1e-2  # mid-descent
    bumped = list(loss)
    bumped[52] = bumped[51] + 0.001  # one small rise on the way down
    assert suggest_valley(lrs, bumped) == pytest.approx(smooth, rel=0.25)
    rng = np.random.default_rng(0)
    for _ in range(20):  # noisy curves: the same rule as the written-out reference
        noisy = (np.array(loss) + rng.normal(0, 0.02, len(loss))).tolist()
        assert suggest_valley(lrs, noisy) == pytest.approx(_valley_reference(lrs, noisy))


def test_steepest_is_taken_on_the_way_down_not_in_a_spikes_decay():
    """A smoothed curve that falls, then jumps on a spike and decays from it as the average forgets the
    spike: the steepest fall is the descent before the minimum (was: the decay after the spike)."""
    lrs = [10 ** (-4 + 0.25 * i) for i in range(24)]
    smoothed = [2.3 - 0.05 * i for i in range(12)] + [1.5 - 0.02 * i for i in range(4)] + [9.0, 7.0, 5.6, 4.7, 4.1, 3.7, 3.4, 3.2]
    steepest = suggest_steepest(lrs, smoothed)
    assert lrs.index(min(lrs, key=lambda lr: abs(math.log(lr / steepest)))) < 16
    assert suggest_steepest(lrs[:3], [2.0, 2.5, 3.0]) == pytest.approx(lrs[0])  # the loss only rose: the smallest lr
