"""Closed forms, combinators, the builder, apply(), interop and a registry-wide sweep."""

import doctest
import json
import math
import pickle
from dataclasses import asdict

import pytest
import torch

import steepest.schedules as ss
from steepest.errors import ConfigError
from steepest.schedules import base, basic, combine, cyclic, decay, interop, plateau
from steepest.schedules.basic import Cosine, WarmupCosine
from steepest.schedules.cyclic import OneCycle, OneCycleMomentum
from steepest.schedules.decay import (
    Exponential,
    InverseSqrt,
    Polynomial,
    Step,
    Warmup,
    WarmupStableDecay,
)

L = torch.optim.lr_scheduler
BASE = 0.5


@pytest.mark.parametrize("module", [base, basic, combine, cyclic, decay, interop, plateau], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_warmup_matches_the_references_recipe():
    s = Warmup(total_steps=1000)  # lr/20 at the start, lr after 10% of training, linear between
    assert s(0) == pytest.approx(1 / 20)
    assert s(50) == pytest.approx(1 / 20 + (1 - 1 / 20) * 0.5)
    assert s(100) == 1.0 and s(999) == 1.0
    assert Warmup(1000, warmup_steps=10, start_ratio=0.0)(5) == 0.5


def test_a_zero_warmup_span_is_full_scale_from_step_0():
    """No warmup means m(0) = 1: the schedule is then its post-warmup part from the first step."""
    for s in (Warmup(100, warmup_fraction=0.0), Warmup(100, warmup_steps=0), Warmup(1000, warmup_fraction=0.0004),
              ss.build_schedule("warmup", 100, warmup_fraction=0.0), ss.build_schedule("warmup", 100, warmup_steps=0)):
        assert [s(t) for t in range(5)] == [1.0] * 5, s
    assert Warmup(100, warmup_steps=0).span() == 0 and Warmup(100, warmup_steps=1)(0) == 0.05  # one step of warmup still warms
    cosine = Cosine(100, eta_min_ratio=0.1)
    for s in (WarmupCosine(100, warmup_fraction=0.0, eta_min_ratio=0.1), WarmupCosine(100, eta_min_ratio=0.1, warmup_steps=0),
              ss.build_schedule("warmup_cosine", 100, warmup_fraction=0.0, eta_min_ratio=0.1)):
        assert [s(t) for t in range(105)] == [cosine(t) for t in range(105)]
    stable_decay = WarmupStableDecay(100, warmup_fraction=0.0, decay_fraction=0.2)
    assert [stable_decay(t) for t in range(81)] == [1.0] * 81 and stable_decay(90) == pytest.approx(0.5)
    for s in (InverseSqrt(warmup_steps=0), ss.build_schedule("inverse_sqrt", 100, warmup_steps=0)):
        assert [s(t) for t in range(50)] == pytest.approx([(t + 1) ** -0.5 for t in range(50)])  # rsqrt decay from 1
        assert s(0) == 1.0
    joined = ss.build_schedule("join", 100, parts=[{"name": "warmup", "warmup_fraction": 0.0}, {"name": "cosine"}],
                               boundaries=[0.1])
    assert joined(0) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        Warmup(100, warmup_steps=-1)
    with pytest.raises(ValueError, match="warmup_steps"):
        InverseSqrt(warmup_steps=-1)


def test_warmup_cosine_closed_form():
    s = WarmupCosine(total_steps=200, warmup_fraction=0.1, eta_min_ratio=0.2)
    for t in range(20):
        assert s(t) == pytest.approx((t + 1) / 20)
    for t in range(20, 201):
        assert s(t) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * (t - 20) / 180)))
    assert [WarmupCosine(200, 0.0, 0.2, 20)(t) for t in range(210)] == [s(t) for t in range(210)]


def test_polynomial_is_the_references_formula():
    for p in (0.5, 1.0, 2.0):
        s = Polynomial(total_steps=80, power=p)
        assert [s(t) for t in range(81)] == pytest.approx([(1 - t / 80) ** p for t in range(81)])


def test_inverse_sqrt_closed_form():
    s = InverseSqrt(warmup_steps=100)
    assert s(99) == pytest.approx(1.0) and s(49) == pytest.approx(0.5) and s(399) == pytest.approx(0.5)
    d_model, w = 512, 4000  # the paper's lrate = d_model^-0.5 min(n^-0.5, n w^-1.5), n = step + 1
    peak = d_model**-0.5 * w**-0.5
    for n in (1, 100, 3999, 4000, 4001, 10**5):
        assert peak * InverseSqrt(w)(n - 1) == pytest.approx(d_model**-0.5 * min(n**-0.5, n * w**-1.5))


@pytest.mark.parametrize("decay,shape", [("linear", lambda u: 1 - u), ("cosine", lambda u: 0.5 * (1 + math.cos(math.pi * u))),
                                         ("sqrt", lambda u: 1 - math.sqrt(u))])
def test_wsd_phases(decay, shape):
    s = WarmupStableDecay(total_steps=100, warmup_fraction=0.1, decay_fraction=0.2, decay=decay, end_ratio=0.1)
    assert [s(t) for t in range(10)] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert all(s(t) == 1.0 for t in range(10, 80))
    for t in range(80, 105):
        assert s(t) == pytest.approx(0.1 + 0.9 * shape(min(t - 80, 20) / 20))


def test_build_schedule_resolves_fractions_of_training():
    assert ss.build_schedule("step", 90).step_size == 30
    assert ss.build_schedule("step", 90, step_size=0.5).step_size == 45
    assert ss.build_schedule("step", 90, step_size=7).step_size == 7
    assert ss.build_schedule("multistep", 200, milestones=[0.5, 150]).milestones == (100, 150)
    assert ss.build_schedule("inverse_sqrt", 1000).warmup_steps == 50
    assert ss.build_schedule("warmup", 1000, warmup_steps=0.02).span() == 20
    assert ss.build_schedule("cyclic", 100, step_size_up=0.2, step_size_down=0.3) == ss.cyclic.Cyclic(20, 30)
    assert ss.build_schedule("cosine", 10) == Cosine(10)
    for bad in ({"step_size": 1.5}, {"step_size": "ten"}, {"step_size": 0}, {"gamma": 0.1, "nope": 1}):
        with pytest.raises(ConfigError, match="schedule \\(step\\)"):
            ss.build_schedule("step", 90, **bad)
    with pytest.raises(ConfigError, match="total_steps"):
        ss.build_schedule("cosine", 0)
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        ss.build_schedule("cosin", 10)


def test_join_is_continuous_at_boundaries():
    s = ss.build_schedule("join", 200, parts=[{"name": "warmup", "warmup_fraction": 1.0, "start_ratio": 0.0}, {"name": "cosine"}],
                          boundaries=[0.1])
    assert s.boundaries == (20,)
    assert s(19) == pytest.approx(19 / 20) and s(20) == 1.0
    assert max(abs(s(t + 1) - s(t)) for t in range(199)) <= 1 / 20 + 1e-12
    three = ss.build_schedule("join", 100, parts=[{"name": "warmup", "warmup_fraction": 1.0}, {"name": "constant"},
                                                  {"name": "polynomial", "power": 1.0}], boundaries=[10, 0.8])
    assert three.boundaries == (10, 80)
    assert three(9) < three(10) == three(79) == three(80) == 1.0 and three(100) == 0.0
    assert max(abs(three(t + 1) - three(t)) for t in range(10, 100)) == pytest.approx(1 / 20)
    fractions = ss.by_fraction(100, [(0.25, Exponential(0.9)), (0.75, Step(10, 0.5))])
    assert fractions.boundaries == (25,) and fractions(25) == 1.0 and fractions(24) == pytest.approx(0.9**24)
    for bad in ({"boundaries": []}, {"boundaries": [101]}, {"boundaries": [0.5], "parts": [{"name": "constant"}, {}]}):
        kwargs = {"parts": [{"name": "constant"}, {"name": "cosine"}], **bad}
        with pytest.raises(ConfigError):
            ss.build_schedule("join", 100, **kwargs)


def test_interop_both_ways():
    tab = ss.from_torch(lambda o: L.MultiStepLR(o, [3, 6], 0.1), 8)
    assert tab.values == pytest.approx((1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01)) and tab(100) == pytest.approx(0.01)
    plateau_tab = ss.from_torch(lambda o: L.ReduceLROnPlateau(o, factor=0.5, patience=0), 4, metric=lambda t: 1.0)
    assert plateau_tab.values == pytest.approx((1.0, 1.0, 0.5, 0.25))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE)
    sched = ss.to_torch(Polynomial(10, 2.0), opt)
    for t in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(BASE * Polynomial(10, 2.0)(t))
        opt.step()
        sched.step()
    state = sched.state_dict()
    again = ss.to_torch(Polynomial(10, 2.0), torch.optim.SGD([p], lr=BASE))
    again.load_state_dict(state)
    assert again.last_epoch == 12 and again.lr_lambdas[0] == Polynomial(10, 2.0)


def test_any_hyperparameter_can_follow_a_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.01)
    ss.apply(Exponential(0.5), opt, 2, key="weight_decay")
    ss.apply(OneCycleMomentum(10), opt, 0, key="beta1")
    g = opt.param_groups[0]
    assert g["weight_decay"] == pytest.approx(0.0025) and g["betas"] == pytest.approx((0.9, 0.99))
    ss.apply(Exponential(0.5), opt, 1, key="beta1")
    assert g["betas"][0] == pytest.approx(0.45) and g["initial_beta1"] == 0.9 and g["betas"][1] == 0.99
    assert ss.apply_beta1(Exponential(0.5), opt, 2) == 0.25 and g["betas"][0] == pytest.approx(0.225)
    with pytest.raises(KeyError, match="momentum"):
        ss.apply(Exponential(0.5), opt, 1, key="momentum")
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    with pytest.raises(KeyError, match="betas"):
        ss.apply(Exponential(0.5), sgd, 1, key="beta1")


def test_apply_keeps_a_tensor_lr_in_place():
    p = torch.nn.Parameter(torch.zeros(1))
    lr = torch.tensor(0.1)
    opt = torch.optim.Adam([p], lr=lr, betas=(torch.tensor(0.9), torch.tensor(0.99)))
    ss.apply(Exponential(0.5), opt, 1)
    ss.apply(Exponential(0.5), opt, 1, key="beta1")
    g = opt.param_groups[0]
    assert g["lr"] is lr and float(lr) == pytest.approx(0.05) and g["initial_lr"] == pytest.approx(0.1)
    assert float(g["betas"][0]) == pytest.approx(0.45) and isinstance(g["betas"][0], torch.Tensor)


def test_apply_then_torch_scheduler_agree_on_initial_lr():
    """apply() uses torch's own `initial_lr` key, so the two see the same base value."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    ss.apply(Cosine(10), opt, 5)
    assert opt.param_groups[0]["initial_lr"] == 0.2


def test_linear_scaling_rule():
    assert ss.linear_scaling_lr(0.1, 1024) == pytest.approx(0.4)
    assert ss.linear_scaling_lr(0.1, 32, base_batch_size=64) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        ss.linear_scaling_lr(0.1, 0)


def test_reduce_on_plateau_state_round_trips():
    metrics = [1.0, 1.0, 1.0, 0.9, 0.95, 0.95, 0.95, 0.95]
    whole = ss.ReduceOnPlateau(factor=0.5, patience=1, cooldown=1)
    first = ss.ReduceOnPlateau(factor=0.5, patience=1, cooldown=1)
    for m in metrics[:4]:
        whole.step(m), first.step(m)
    resumed = ss.ReduceOnPlateau(factor=0.5, patience=1, cooldown=1)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    assert [whole.step(m) for m in metrics[4:]] == [resumed.step(m) for m in metrics[4:]]
    assert whole.multiplier < 0.5 and "multiplier" in repr(whole)
    with pytest.raises(KeyError):
        resumed.load_state_dict({"bogus": 1})
    for bad in ({"factor": 1.0}, {"mode": "up"}, {"threshold_mode": "pct"}, {"min_lr": 1e-5}):
        with pytest.raises(ValueError):
            ss.ReduceOnPlateau(**bad)


@pytest.mark.parametrize("name", ss.SCHEDULES.names())
def test_every_schedule_builds_from_the_step_budget_pickles_and_stays_finite(name):
    parts = {"join": {"parts": [{"name": "warmup", "warmup_fraction": 1.0}, {"name": "cosine"}], "boundaries": [0.1]}}
    for total in (1, 7, 100):
        s = ss.build_schedule(name, total, **parts.get(name, {}))
        values = [s(t) for t in range(0, total + 30)]
        assert all(math.isfinite(v) and v >= 0 for v in values), (total, values)
        assert max(values) <= 1.0 + 1e-12  # every shipped schedule is a multiplier of the peak
        again = pickle.loads(pickle.dumps(s))
        assert again == s and [again(t) for t in range(total + 30)] == values
    config = asdict(s)
    assert json.loads(json.dumps(config)) == json.loads(json.dumps(config))  # plain data
    assert repr(s).startswith(type(s).__name__)
    with pytest.raises(AttributeError):
        s.total_steps = 5  # frozen


def test_recipe_schedules_momentum_and_plateau_callback():
    from steepest.config import load_recipe
    from steepest.run import build_run
    from steepest.training.events import Callback

    recipe = load_recipe("digits_mlp", ["data.subset=300", "trainer.max_steps=30", "optimizer={name: momentum, lr: 0.05}",
                                        "schedule={name: onecycle}", "schedules={momentum: {name: onecycle_momentum}}",
                                        "trainer.early_stopping=null",
                                        "callbacks=[{name: reduce_on_plateau, patience: 0, factor: 0.5}]", "trainer.eval_every_n_steps=5"])
    seen = []

    class Record(Callback):
        name = "record"

        def on_before_optimizer_step(self, trainer):
            g = trainer.optimizer.param_groups[0]
            seen.append((trainer.state.step, g["lr"], g["momentum"]))

    run = build_run(recipe, None, console=False, extra_callbacks=[Record()])
    run.trainer.fit()
    plateau_cb = next(cb for cb in run.trainer.callbacks if cb.name == "reduce_on_plateau")
    one, mom = OneCycle(30), OneCycleMomentum(30)
    assert len(seen) == 30
    for step, lr, m in seen:
        assert m == pytest.approx(0.9 * mom(step))
        assert lr <= 0.05 * one(step) + 1e-12
    assert plateau_cb.plateau.multiplier <= 1.0


def test_recipe_validation_accepts_fractions_for_step_counts():
    from steepest.config.components import check_kwargs

    for name, kwargs in [("step", {"step_size": 0.3}), ("multistep", {"milestones": [0.5, 120]}),
                         ("cyclic", {"step_size_up": 0.1}), ("inverse_sqrt", {"warmup_steps": 0.05})]:
        check_kwargs("schedule", ss.SCHEDULES.get(name).target, kwargs, ("total_steps",))
        ss.build_schedule(name, 200, **kwargs)
    with pytest.raises(ConfigError, match="step_size"):
        check_kwargs("schedule", ss.SCHEDULES.get("step").target, {"step_size": "often"}, ("total_steps",))


@pytest.mark.parametrize("power, end", [(1.0, 0.2), (2.0, 0.05), (0.5, 1.0)])
def test_polynomial_decays_to_its_end_ratio_as_keras_polynomial_decay(power, end):
    """Keras' PolynomialDecay (cycle=False): (lr0 - end_lr) (1 - min(t, T)/T)^p + end_lr, divided by lr0."""
    lr0, total = 0.4, 37
    s = Polynomial(total_steps=total, power=power, end_ratio=end)
    expected = [((lr0 - end * lr0) * (1 - min(t, total) / total) ** power + end * lr0) / lr0 for t in range(total + 5)]
    assert [s(t) for t in range(total + 5)] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert s(0) == pytest.approx(1.0) and s(total + 3) == pytest.approx(end)
    with pytest.raises(ValueError, match="end_ratio"):
        Polynomial(total_steps=10, end_ratio=1.5)
