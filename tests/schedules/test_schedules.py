"""Schedules against torch.optim.lr_scheduler over whole runs, closed forms elsewhere, registry-wide checks."""

import math
import pickle
from dataclasses import asdict

import pytest
import torch

import steepest.schedules as ss
from steepest.schedules.cyclic import Cyclic, OneCycle, OneCycleMomentum
from steepest.schedules.decay import (
    CosineRestarts,
    Exponential,
    InverseSqrt,
    MultiStep,
    Polynomial,
    Step,
    Warmup,
    WarmupStableDecay,
)

BASE = 0.5


def torch_lrs(make, steps, base=BASE, momentum=0.9, key="lr"):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base, momentum=momentum)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0][key])
        opt.step()
        sched.step()
    return out


def ours(schedule, steps, base=BASE):
    return [base * schedule(t) for t in range(steps)]


L = torch.optim.lr_scheduler
CASES = [
    ("step", lambda o: L.StepLR(o, 7, 0.3), Step(7, 0.3), 60),
    ("multistep", lambda o: L.MultiStepLR(o, [5, 20, 21, 40], 0.5), MultiStep((40, 5, 21, 20), 0.5), 60),
    ("exponential", lambda o: L.ExponentialLR(o, 0.95), Exponential(0.95), 60),
    ("polynomial", lambda o: L.PolynomialLR(o, total_iters=45, power=2.5), Polynomial(45, 2.5), 60),
    ("cosine", lambda o: L.CosineAnnealingLR(o, T_max=50, eta_min=0.05), ss.build_schedule("cosine", 50, eta_min_ratio=0.1), 51),
    ("restarts", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01), CosineRestarts(5, 2, 0.02), 80),
    ("restarts_1", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=9, T_mult=1), CosineRestarts(9, 1), 50),
    ("onecycle_cos", lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=100, pct_start=0.25, div_factor=10, final_div_factor=100),
     OneCycle(100, 0.25, 10, 100), 100),
    ("onecycle_linear", lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=64, anneal_strategy="linear"), OneCycle(64, anneal_strategy="linear"), 64),
    ("cyclic_tri", lambda o: L.CyclicLR(o, base_lr=0.05, max_lr=BASE, step_size_up=6, cycle_momentum=False), Cyclic(6, base_ratio=0.1), 50),
    ("cyclic_tri2", lambda o: L.CyclicLR(o, base_lr=0.05, max_lr=BASE, step_size_up=4, step_size_down=7, mode="triangular2", cycle_momentum=False),
     Cyclic(4, 7, 0.1, "triangular2"), 60),
    ("cyclic_exp", lambda o: L.CyclicLR(o, base_lr=0.1, max_lr=BASE, step_size_up=5, mode="exp_range", gamma=0.97, cycle_momentum=False),
     Cyclic(5, None, 0.2, "exp_range", 0.97), 60),
]


@pytest.mark.parametrize("name,make,schedule,steps", CASES, ids=[c[0] for c in CASES])
def test_whole_run_equals_torch(name, make, schedule, steps):
    expected = torch_lrs(make, steps)
    got = ours(schedule, steps)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_onecycle_momentum_equals_torch():
    make = lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=80, pct_start=0.3)  # noqa: E731
    expected = torch_lrs(make, 80, key="momentum", momentum=0.95)
    got = [0.95 * OneCycleMomentum(80, 0.3)(t) for t in range(80)]
    assert got == pytest.approx(expected, rel=1e-9)


def test_reduce_on_plateau_equals_torch():
    metrics = [1.0, 0.9, 0.91, 0.92, 0.93, 0.9, 0.95, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 0.4, 0.45, 0.5, 0.55, 0.6]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    theirs = L.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=BASE * 0.1)
    mine = ss.ReduceOnPlateau(factor=0.5, patience=2, cooldown=1, min_ratio=0.1)
    for m in metrics:
        theirs.step(m)
        assert BASE * mine.step(m) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_warmup_matches_the_references_recipe():
    s = Warmup(total_steps=1000)  # lr/20 at the start, lr after 10% of training
    assert s(0) == pytest.approx(1 / 20)
    assert s(50) == pytest.approx(1 / 20 + (1 - 1 / 20) * 0.5)
    assert s(100) == 1.0 and s(999) == 1.0


def test_inverse_sqrt_closed_form():
    s = InverseSqrt(warmup_steps=100)
    assert s(99) == pytest.approx(1.0)
    assert s(49) == pytest.approx(0.5)
    assert s(399) == pytest.approx(0.5)  # sqrt(100 / 400)


def test_wsd_phases():
    s = WarmupStableDecay(total_steps=100, warmup_fraction=0.1, decay_fraction=0.2, decay="linear", end_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == 1.0
    assert all(s(t) == 1.0 for t in range(10, 80))
    assert s(90) == pytest.approx(0.1 + 0.9 * 0.5) and s(100) == pytest.approx(0.1)


def test_join_is_continuous_at_boundaries():
    s = ss.build_schedule("join", 200, parts=[{"name": "warmup", "warmup_fraction": 1.0, "start_ratio": 0.0}, {"name": "cosine"}],
                          boundaries=[0.1])
    assert s(19) == pytest.approx(19 / 20)
    assert s(20) == pytest.approx(1.0)
    jumps = [abs(s(t + 1) - s(t)) for t in range(199)]
    assert max(jumps) < 0.06
    fractions = ss.by_fraction(100, [(0.25, Exponential(0.9)), (0.75, Step(10, 0.5))])
    assert fractions.boundaries == (25,) and fractions(25) == 1.0 and fractions(24) == pytest.approx(0.9**24)


def test_interop_both_ways():
    tab = ss.from_torch(lambda o: L.MultiStepLR(o, [3, 6], 0.1), 8)
    assert tab.values == pytest.approx((1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    sched = ss.to_torch(Polynomial(10, 2.0), opt)
    for t in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(BASE * Polynomial(10, 2.0)(t))
        opt.step()
        sched.step()


def test_any_hyperparameter_can_follow_a_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.01)
    ss.apply(Exponential(0.5), opt, 2, key="weight_decay")
    ss.apply(OneCycleMomentum(10), opt, 0, key="beta1")
    g = opt.param_groups[0]
    assert g["weight_decay"] == pytest.approx(0.0025) and g["betas"] == pytest.approx((0.9, 0.99))
    ss.apply(Exponential(0.5), opt, 1, key="beta1")
    assert g["betas"][0] == pytest.approx(0.45) and g["initial_beta1"] == 0.9
    with pytest.raises(KeyError, match="momentum"):
        ss.apply(Exponential(0.5), opt, 1, key="momentum")


def test_linear_scaling_rule():
    assert ss.linear_scaling_lr(0.1, 1024) == pytest.approx(0.4)


@pytest.mark.parametrize("name", [n for n in ss.SCHEDULES.names() if n != "join"])
def test_every_schedule_builds_pickles_and_stays_finite(name):
    required = {"step": {"step_size": 10}, "multistep": {"milestones": [10, 20]}, "cosine_restarts": {"t0": 10}}
    s = ss.build_schedule(name, 100, **required.get(name, {}))
    values = [s(t) for t in range(0, 130)]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    again = pickle.loads(pickle.dumps(s))
    assert [again(t) for t in range(130)] == values
    assert isinstance(asdict(s), dict) and repr(s).startswith(type(s).__name__)


def test_recipe_schedules_momentum_and_plateau_callback():
    from steepest.config import load_recipe
    from steepest.train.run import build_run

    recipe = load_recipe("digits_mlp", ["data.subset=300", "trainer.max_steps=30", "optimizer={name: momentum, lr: 0.05}",
                                        "schedule={name: onecycle}", "schedules={momentum: {name: onecycle_momentum}}",
                                        "trainer.early_stopping=null",
                                        "callbacks=[{name: reduce_on_plateau, patience: 0, factor: 0.5}]", "trainer.eval_every_n_steps=5"])
    run = build_run(recipe, None, console=False)
    seen = []
    from steepest.train.events import Callback

    class Record(Callback):
        name = "record"

        def on_before_optimizer_step(self, trainer):
            g = trainer.optimizer.param_groups[0]
            seen.append((trainer.state.step, g["lr"], g["momentum"]))

    run.trainer.add_callback(Record())
    run.trainer.fit()
    plateau = next(cb for cb in run.trainer.callbacks if cb.name == "reduce_on_plateau")
    one = OneCycle(30)
    mom = OneCycleMomentum(30)
    for step, lr, m in seen:
        assert m == pytest.approx(0.9 * mom(step))
        assert lr <= 0.05 * one(step) + 1e-12
    assert plateau.plateau.multiplier <= 1.0
