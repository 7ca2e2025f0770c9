"""Registry-wide checks: torch twins, convergence on a quadratic and Rosenbrock, state_dict resume."""

import copy
import math

import pytest
import torch

import steepest.optim as so

# name -> (torch twin factory, non-default hyperparameters)
TWINS = {
    "sgd": (torch.optim.SGD, dict(lr=0.05, weight_decay=0.01)),
    "momentum": (lambda p, **k: torch.optim.SGD(p, momentum=0.9, **k), dict(lr=0.05, weight_decay=0.01, dampening=0.1)),
    "nesterov": (lambda p, **k: torch.optim.SGD(p, momentum=0.9, nesterov=True, **k), dict(lr=0.05, weight_decay=0.01)),
    "adagrad": (torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-9)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.95, momentum=0.5, centered=True, weight_decay=0.01)),
    "adadelta": (torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    "amsgrad": (lambda p, **k: torch.optim.Adam(p, amsgrad=True, **k), dict(lr=0.01, betas=(0.8, 0.99))),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.1)),
    "nadam": (torch.optim.NAdam, dict(lr=0.01, betas=(0.85, 0.995), momentum_decay=0.005)),
    "radam": (torch.optim.RAdam, dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.01)),
}


def make_params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in [(6, 4), (4,), (3, 2, 2)]]


def trajectory(factory, steps=50, seed=0):
    ps = [p.requires_grad_(True) for p in make_params(seed)]
    opt = factory(ps)
    g = torch.Generator().manual_seed(seed + 99)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) + 0.1 * p.detach()
        opt.step()
    return [p.detach() for p in ps]


@pytest.mark.parametrize("name", list(TWINS))
def test_registered_twin_equals_torch(name):
    twin, hp = TWINS[name]
    ours = trajectory(lambda ps: so.create(name, ps, **hp))
    theirs = trajectory(lambda ps: twin(ps, **hp))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)


def float64_default(fn):
    """fn() with float64 as the default dtype: torch.optim.NAdam's mu_product is then float64 like ours."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return fn()
    finally:
        torch.set_default_dtype(previous)


def nadam_hp(seed):
    g = torch.Generator().manual_seed(500 + seed)
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))  # noqa: E731
    return dict(lr=u(1e-3, 5e-2), betas=(u(0.8, 0.95), u(0.95, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1) if seed else 0.0,
                momentum_decay=u(1e-3, 1e-2), decoupled_weight_decay=seed % 2 == 1)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("seed", range(5))
def test_own_nadam_equals_torch_nadam_for_random_hyperparameters(seed, impl):
    """steepest's NAdam against torch.optim.NAdam, 60 float64 steps. The twin runs with float64 as the
    default dtype, so that its per-parameter mu_product (a tensor of the default dtype) is float64 like ours."""
    hp = nadam_hp(seed)
    ours = trajectory(lambda ps: so.NAdam(ps, impl=impl, **hp), steps=60, seed=seed)
    theirs = float64_default(lambda: trajectory(lambda ps: torch.optim.NAdam(ps, **hp), steps=60, seed=seed))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-9), (hp, (a - b).abs().max())


def test_own_nadam_follows_a_beta1_schedule_like_torch():
    """The mu product multiplies the mu of each step's own beta1 (a OneCycle-style momentum schedule)."""
    hp = dict(lr=0.02, betas=(0.95, 0.99), weight_decay=0.01, momentum_decay=0.006)

    def scheduled(opt):
        step = opt.step

        def step_with_schedule():
            t = getattr(opt, "_t", 0) + 1
            opt._t = t
            for group in opt.param_groups:
                group["betas"] = (0.95 - 0.1 * abs(math.sin(t / 7)), group["betas"][1])
            step()

        opt.step = step_with_schedule
        return opt

    ours = trajectory(lambda ps: scheduled(so.NAdam(ps, **hp)), steps=60)
    theirs = float64_default(lambda: trajectory(lambda ps: scheduled(torch.optim.NAdam(ps, **hp)), steps=60))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-9), (a - b).abs().max()


def assert_rewind_is_exact(cls, hp, first):
    """`first` steps, save, run on, rewind the same optimizer, 6 more steps == `first` + 6 steps straight."""
    straight = tiny_model()
    opt = cls(straight.parameters(), **hp)
    train_steps(straight, opt, first, 1)
    train_steps(straight, opt, 6, 2)

    model = tiny_model()
    opt1 = cls(model.parameters(), **hp)
    train_steps(model, opt1, first, 1)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt1.state_dict())
    train_steps(model, opt1, 9, 3)  # run on past the save, then rewind the same optimizer
    model.load_state_dict(saved_model)
    opt1.load_state_dict(saved_opt)
    train_steps(model, opt1, 6, 2)
    for a, b in zip(straight.parameters(), model.parameters()):
        assert torch.equal(a, b)


def torch_checkpoint_then(twin, continue_with, hp, first):
    """`first` steps of the torch twin, its state_dict loaded into `continue_with(model)`, 6 more steps."""
    m = tiny_model()
    opt = twin(m.parameters(), **hp)
    train_steps(m, opt, first, 1)
    state = copy.deepcopy(opt.state_dict())
    opt2 = continue_with(m.parameters(), **hp)
    opt2.load_state_dict(state)
    train_steps(m, opt2, 6, 2)
    return list(m.parameters())


def test_nadam_resume_is_exact_and_the_mu_product_costs_one_multiplication_per_step(monkeypatch):
    """Loading an earlier state into the same optimizer or into a fresh one continues exactly; a
    torch.optim.NAdam checkpoint continues like torch; each step computes O(1) mu's, not O(t)."""
    import steepest.optim.nadam as nadam_module

    hp = dict(lr=0.01, betas=(0.85, 0.99), weight_decay=0.05, momentum_decay=0.006)
    assert_rewind_is_exact(so.NAdam, hp, first=7)
    from_torch = float64_default(lambda: torch_checkpoint_then(torch.optim.NAdam, so.NAdam, hp, first=7))
    torch_only = float64_default(lambda: torch_checkpoint_then(torch.optim.NAdam, torch.optim.NAdam, hp, first=7))
    for a, b in zip(from_torch, torch_only):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)

    calls = {"n": 0}
    mu = nadam_module.nadam_mu

    def counted(*args):
        calls["n"] += 1
        return mu(*args)

    monkeypatch.setattr(nadam_module, "nadam_mu", counted)
    w = torch.zeros(3, requires_grad=True)
    long_run = so.NAdam([w], impl="reference")
    for t in range(1, 301):
        w.grad = torch.ones(3)
        calls["n"] = 0
        long_run.step()
        assert calls["n"] == 2, (t, calls["n"])  # mu_t and mu_{t+1}; the product takes one multiplication


def radam_hp(seed):
    g = torch.Generator().manual_seed(700 + seed)
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))  # noqa: E731
    return dict(lr=u(1e-3, 5e-2), betas=(u(0.8, 0.95), u(0.9, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1) if seed else 0.0,
                decoupled_weight_decay=seed % 2 == 1)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("seed", range(5))
def test_own_radam_equals_torch_radam_for_random_hyperparameters(seed, impl):
    """steepest's RAdam against torch.optim.RAdam, 60 float64 steps: the un-rectified first steps
    (rho_t <= 5) and the rectified ones after them, L2 and decoupled weight decay."""
    hp = radam_hp(seed)
    ours = trajectory(lambda ps: so.RAdam(ps, impl=impl, **hp), steps=60, seed=seed)
    theirs = trajectory(lambda ps: torch.optim.RAdam(ps, foreach=False, **hp), steps=60, seed=seed)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-9), (hp, (a - b).abs().max())


def test_radam_resume_is_exact_and_continues_a_torch_checkpoint():
    """Loading an earlier state into the same optimizer continues exactly (across the switch to the
    rectified branch); a torch.optim.RAdam checkpoint continues like torch."""
    hp = dict(lr=0.01, betas=(0.85, 0.9), weight_decay=0.05, decoupled_weight_decay=True)  # rectified from t = 6
    assert_rewind_is_exact(so.RAdam, hp, first=4)
    from_torch = torch_checkpoint_then(torch.optim.RAdam, so.RAdam, hp, first=4)
    torch_only = torch_checkpoint_then(torch.optim.RAdam, torch.optim.RAdam, hp, first=4)
    for a, b in zip(from_torch, torch_only):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_ranger_equals_torch_radam_inside_lookahead():
    k, alpha = 4, 0.6

    def manual(ps):
        inner = torch.optim.RAdam(ps, lr=0.01, betas=(0.95, 0.999), eps=1e-5)
        slow = [p.detach().clone() for p in ps]
        count = {"n": 0}

        class Manual:
            def step(self):
                inner.step()
                count["n"] += 1
                if count["n"] % k == 0:
                    with torch.no_grad():
                        for p, s in zip(ps, slow):
                            s += alpha * (p - s)
                            p.copy_(s)

        return Manual()

    ours = trajectory(lambda ps: so.create("ranger", ps, lr=0.01, k=k, alpha=alpha))
    expected = trajectory(manual)
    for a, b in zip(ours, expected):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


ALL = so.OPTIMIZERS.names()
TUNED_LR = {"sgd": 0.01, "momentum": 0.002, "nesterov": 0.002, "adagrad": 0.5, "rmsprop": 0.01, "adadelta": 5.0, "adam": 0.05,
            "amsgrad": 0.05, "adamw": 0.05, "nadam": 0.05, "radam": 0.05, "lars": 5.0, "lamb": 0.05, "lion": 0.01, "lookahead": 0.05,
            "ranger": 0.05, "rangerlars": 0.05, "novograd": 0.05, "adahessian": 0.2, "muon": 0.02}
# Rosenbrock's curved valley (curvature ~1e3) needs smaller steps for the plain-gradient methods.
ROSENBROCK_LR = {**TUNED_LR, "sgd": 5e-4, "momentum": 1e-4, "nesterov": 1e-4, "radam": 2e-3, "ranger": 2e-3}


def loss_quadratic(w):
    scales = torch.tensor([1.0, 10.0], dtype=w.dtype)
    return (scales * (w - torch.tensor([1.0, -2.0], dtype=w.dtype)) ** 2).sum()


def loss_rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fn,start,steps,lrs", [(loss_quadratic, [3.0, 3.0], 300, TUNED_LR), (loss_rosenbrock, [-1.0, 1.5], 500, ROSENBROCK_LR)],
                         ids=["quadratic", "rosenbrock"])
def test_every_optimizer_decreases_quadratic_and_rosenbrock(name, fn, start, steps, lrs):
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = so.create(name, [w], lr=lrs[name], **({"adamw_lr": 0.05} if name == "muon" else {}))
    initial = float(fn(w.detach()))
    create_graph = name == "adahessian"
    for _ in range(steps):
        opt.zero_grad()
        fn(w).backward(create_graph=create_graph)
        opt.step()
    final = float(fn(w.detach()))
    assert final < 0.3 * initial, (name, initial, final)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()


def train_steps(model, opt, n, start, create_graph=False):
    g = torch.Generator().manual_seed(start)
    for _ in range(n):
        x = torch.randn(8, 4, generator=g, dtype=torch.float64)
        opt.zero_grad()
        model(x).pow(2).mean().backward(create_graph=create_graph)
        opt.step()


@pytest.mark.parametrize("name", ALL)
def test_state_dict_resume_equals_uninterrupted(name):
    cg = name == "adahessian"
    hp = {"lr": TUNED_LR[name] / 10, "weight_decay": 0.01}
    straight = tiny_model()
    opt = so.create(name, straight, **hp)
    train_steps(straight, opt, 7, 1, cg)
    train_steps(straight, opt, 6, 2, cg)

    first = tiny_model()
    opt1 = so.create(name, first, **hp)
    train_steps(first, opt1, 7, 1, cg)
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt1.state_dict())
    resumed = tiny_model(seed=123)
    resumed.load_state_dict(saved_model)
    opt2 = so.create(name, resumed, **hp)
    opt2.load_state_dict(saved_opt)
    train_steps(resumed, opt2, 6, 2, cg)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_param_groups_exclude_bias_and_norm_and_scale_lr():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = so.create("lamb", model, lr=0.1, weight_decay=0.05, lr_scale={"2": 0.1})
    by_lr = {}
    for g in opt.param_groups:
        by_lr.setdefault(round(g["lr"], 6), []).append(g)
    assert set(by_lr) == {0.1, 0.01}
    decayed = [p for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    assert {id(p) for p in decayed} == {id(model[0].weight), id(model[2].weight)}
    assert all(g["adapt"] is False for g in opt.param_groups if g["weight_decay"] == 0)


def test_create_names_unknown_optimizer():
    from steepest.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'lamb'"):
        so.create("lamc", [torch.zeros(1, requires_grad=True)])


def test_muon_splits_matrices_and_the_rest():
    model = tiny_model()
    opt = so.create("muon", model, lr=0.02, adamw_lr=1e-3)
    assert isinstance(opt.muon, torch.optim.Muon) and isinstance(opt.adamw, torch.optim.AdamW)
    muon_params = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    assert muon_params == {id(model[0].weight), id(model[3].weight)}
    before = model[0].weight.detach().clone()
    train_steps(model, opt, 2, 0)
    assert not torch.equal(before, model[0].weight)


class _OwnNorm(torch.nn.Module):
    """A user's normalization layer: a per-channel gain, no torch norm class to recognize."""

    def __init__(self, c):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x / x.norm(dim=1, keepdim=True) * self.gain


@pytest.mark.parametrize("name", ["adamw", "lamb", "lars"])
def test_vectors_get_no_decay_and_no_trust_ratio(name):
    """Every parameter with fewer than two dimensions (biases, RMSNorm2d's and a user's own norm
    gain) is in the group with weight_decay 0 and adapt False; matrices are decayed."""
    from steepest.nn import RMSNorm, RMSNorm2d

    model = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(3, 4, 3), "rms2d": RMSNorm2d(4), "rms": RMSNorm(4),
                                 "own": _OwnNorm(4), "fc": torch.nn.Linear(4, 2)})
    opt = so.create(name, model, lr=1e-3, weight_decay=0.1)
    exempt = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for n, p in model.named_parameters():
        assert (id(p) in exempt) == (p.dim() < 2), n
    for g in opt.param_groups:
        if g["weight_decay"] == 0.0 and "adapt" in g:
            assert g["adapt"] is False
    decayed = so.create(name, model, lr=1e-3, weight_decay=0.1, decay_1d=True)
    exempt = {id(p) for g in decayed.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(model["own"].gain) not in exempt and id(model["fc"].bias) not in exempt


def test_lookahead_takes_a_param_group_added_mid_training():
    """torch's unfreezing pattern, add_param_group: the new tensors get slow weights from their
    values when added, and the next sync (every k steps) treats them as the written-out rule does."""
    from steepest.optim import Lookahead

    k, alpha, lr = 2, 0.5, 0.1
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.full((2,), 2.0))
    opt = Lookahead(torch.optim.SGD([a], lr=lr), k=k, alpha=alpha)
    slow_a, fast_a = a.detach().clone(), a.detach().clone()
    for t in range(5):
        if t == 3:
            opt.add_param_group({"params": [b]})
            slow_b, fast_b = b.detach().clone(), b.detach().clone()
        opt.zero_grad()
        (a.sum() + b.sum()).backward()
        opt.step()
        fast_a -= lr  # the gradient of a.sum() is 1
        if t >= 3:
            fast_b -= lr
        if (t + 1) % k == 0:
            slow_a += alpha * (fast_a - slow_a)
            fast_a = slow_a.clone()
            if t >= 3:
                slow_b += alpha * (fast_b - slow_b)
                fast_b = slow_b.clone()
    assert torch.allclose(a.detach(), fast_a) and torch.allclose(b.detach(), fast_b)
    assert opt.param_groups[1]["lr"] == lr and len(opt.state_dict()["lookahead"]["slow"]) == 2


@pytest.mark.parametrize("name", [n for n in so.OPTIMIZERS if n != "adahessian"])
def test_lr_zero_is_accepted_and_moves_nothing_as_in_torch(name):
    """torch.optim accepts lr=0 (a schedule may reach it); so does every registered optimizer, and a
    step at lr 0 leaves the parameters as they were."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    extra = {"adamw_lr": 0.0} if name == "muon" else {}  # Muon's 1-d tensors step with AdamW at their own lr
    opt = so.create(name, model.parameters(), lr=0.0, **extra)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 6)).square().mean().backward()
        opt.step()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters())), name
