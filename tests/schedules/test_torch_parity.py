"""Whole runs of each schedule against its torch.optim.lr_scheduler twin, to 1e-9."""

import pytest
import torch

import steepest.schedules as ss
from steepest.schedules.basic import Cosine
from steepest.schedules.cyclic import Cyclic, CyclicMomentum, OneCycle, OneCycleMomentum
from steepest.schedules.decay import CosineRestarts, Exponential, MultiStep, Polynomial, Step

L = torch.optim.lr_scheduler
BASE = 0.5


def torch_run(make, steps, keys=("lr",), base=BASE, momentum=0.9, adam=False):
    """The values torch's scheduler sets before each of `steps` optimizer steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=base, betas=(momentum, 0.999)) if adam else torch.optim.SGD([p], lr=base, momentum=momentum)
    sched = make(opt)
    out = {k: [] for k in keys}
    for _ in range(steps):
        g = opt.param_groups[0]
        for k in keys:
            out[k].append(g["betas"][0] if k == "beta1" else g[k])
        opt.step()
        sched.step()
    return out


def ours(schedule, steps, base=BASE):
    return [base * schedule(t) for t in range(steps)]


CASES = [
    ("step", lambda o: L.StepLR(o, 7, 0.3), Step(7, 0.3), 60),
    ("multistep", lambda o: L.MultiStepLR(o, [5, 20, 21, 40], 0.5), MultiStep((40, 5, 21, 20), 0.5), 60),
    ("multistep_repeated", lambda o: L.MultiStepLR(o, [5, 5, 9], 0.5), MultiStep((5, 5, 9), 0.5), 15),
    ("exponential", lambda o: L.ExponentialLR(o, 0.95), Exponential(0.95), 60),
    ("polynomial", lambda o: L.PolynomialLR(o, total_iters=45, power=2.5), Polynomial(45, 2.5), 60),
    ("polynomial_linear", lambda o: L.PolynomialLR(o, total_iters=30, power=1.0), Polynomial(30), 40),
    ("cosine", lambda o: L.CosineAnnealingLR(o, T_max=50, eta_min=0.05), Cosine(50, eta_min_ratio=0.1), 51),
    ("restarts", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01), CosineRestarts(5, 2, 0.02), 160),
    ("restarts_3", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3), CosineRestarts(3, 3), 130),
    ("restarts_1", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=9, T_mult=1), CosineRestarts(9, 1), 50),
    ("onecycle_cos", lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=100, pct_start=0.25, div_factor=10, final_div_factor=100),
     OneCycle(100, 0.25, 10, 100), 100),
    ("onecycle_linear", lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=64, anneal_strategy="linear"), OneCycle(64, anneal_strategy="linear"), 64),
    ("onecycle_three_phase", lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=90, pct_start=0.3, three_phase=True),
     OneCycle(90, 0.3, three_phase=True), 90),
    ("cyclic_tri", lambda o: L.CyclicLR(o, base_lr=0.05, max_lr=BASE, step_size_up=6, cycle_momentum=False), Cyclic(6, base_ratio=0.1), 50),
    ("cyclic_tri2", lambda o: L.CyclicLR(o, base_lr=0.05, max_lr=BASE, step_size_up=4, step_size_down=7, mode="triangular2", cycle_momentum=False),
     Cyclic(4, 7, 0.1, "triangular2"), 60),
    ("cyclic_exp", lambda o: L.CyclicLR(o, base_lr=0.1, max_lr=BASE, step_size_up=5, mode="exp_range", gamma=0.97, cycle_momentum=False),
     Cyclic(5, None, 0.2, "exp_range", 0.97), 60),
    # a peak below the optimizer's lr (the tuning procedure's cyclic tail): torch's max_lr = peak_ratio * lr
    ("cyclic_peak", lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=0.15, step_size_up=3, step_size_down=5, cycle_momentum=False),
     Cyclic(3, 5, 0.02, peak_ratio=0.3), 40),
]


@pytest.mark.parametrize("name,make,schedule,steps", CASES, ids=[c[0] for c in CASES])
def test_whole_run_equals_torch(name, make, schedule, steps):
    assert ours(schedule, steps) == pytest.approx(torch_run(make, steps)["lr"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("adam", [False, True], ids=["momentum", "beta1"])
def test_onecycle_momentum_equals_torch(three_phase, adam):
    make = lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=80, pct_start=0.3, three_phase=three_phase)  # noqa: E731
    key = "beta1" if adam else "momentum"
    expected = torch_run(make, 80, keys=(key,), momentum=0.95, adam=adam)[key]
    s = OneCycleMomentum(80, 0.3, three_phase=three_phase)
    assert [0.95 * s(t) for t in range(80)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_momentum_equals_torch(mode):
    make = lambda o: L.CyclicLR(o, base_lr=0.05, max_lr=BASE, step_size_up=4, step_size_down=6, mode=mode, gamma=0.98,  # noqa: E731
                                base_momentum=0.7, max_momentum=0.9)
    expected = torch_run(make, 50, keys=("lr", "momentum"))
    lr = Cyclic(4, 6, 0.1, mode, 0.98)
    mom = CyclicMomentum(4, 6, mode, 0.98, base_momentum=0.7, max_momentum=0.9)
    assert ours(lr, 50) == pytest.approx(expected["lr"], rel=1e-9)
    assert [0.9 * mom(t) for t in range(50)] == pytest.approx(expected["momentum"], rel=1e-9)


METRICS = [1.0, 0.9, 0.91, 0.92, 0.93, 0.9, 0.95, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 0.4, 0.45, 0.5, 0.55, 0.6,
           0.6, 0.6, 0.39, 0.3999, 0.39, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode,threshold", [("rel", 1e-4), ("rel", 0.05), ("abs", 0.02)])
@pytest.mark.parametrize("cooldown", [0, 2])
def test_reduce_on_plateau_equals_torch(mode, threshold_mode, threshold, cooldown):
    metrics = METRICS if mode == "min" else [-m for m in METRICS]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    kw = dict(mode=mode, factor=0.5, patience=1, threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown)
    theirs = L.ReduceLROnPlateau(opt, min_lr=BASE * 0.1, **kw)
    mine = ss.ReduceOnPlateau(min_ratio=0.1, **kw)
    for m in metrics:
        theirs.step(m)
        assert BASE * mine.step(torch.tensor(m)) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert mine.multiplier < 1 and isinstance(mine.best, float)


def test_reduce_on_plateau_min_lr_and_eps_in_lr_units():
    """A tiny base lr: torch stops reducing once a step would change the lr by <= eps."""
    base = 1e-6
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    theirs = L.ReduceLROnPlateau(opt, factor=0.1, patience=0, min_lr=1e-12)
    mine = ss.ReduceOnPlateau(factor=0.1, patience=0, min_lr=1e-12, base_lr=base)
    for _ in range(8):
        theirs.step(1.0)
        assert base * mine.step(1.0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert mine.multiplier == pytest.approx(1e-2)  # lr 1e-8 -> 1e-9 would change it by 9e-9 <= eps
