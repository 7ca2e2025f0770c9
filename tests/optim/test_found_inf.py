"""`StepwiseOptimizer.step(found_inf=...)`: steepest's own optimizers skip a step on the device, as
torch's fused optimizers do (GradScaler's convention: nonzero = skip). A skipped step changes no
parameter and no device state tensor (its step count, a CPU tensor, advances: the caller puts it
back once the flag is on the host); a taken one is bit-identical to a plain `step()`. The compiled
step (the CUDA default) selects inside the update's own pass; DeviceSkip hands these optimizers the
flag instead of copying and selecting their parameters and state (issue 15)."""

import contextlib
import shutil

import pytest
import torch
from torch import nn

import steepest.optim as so
import steepest.training.skip as skip_module
from steepest.optim import OPTIMIZERS, base, defaults_of
from steepest.optim.base import StepwiseOptimizer
from steepest.training.skip import DeviceSkip

SHAPES = [(5, 3), (3,), (2, 2, 2), ()]
EXTRA = {"momentum": {"ema": True}}  # the registered "momentum" is torch's SGD unless ema=True


def build(name, params, **kwargs):
    """The registered optimizer, or the StepwiseOptimizer inside a Lookahead (ranger, rangerlars)."""
    extra = dict(EXTRA.get(name, {}))
    if "weight_decay" in defaults_of(name):
        extra["weight_decay"] = 0.01
    opt = so.create(name, params, group_params=False, **extra, **kwargs)
    return getattr(opt, "optimizer", opt)


def _own(name):
    return isinstance(build(name, [torch.zeros(2, requires_grad=True)]), StepwiseOptimizer)


OWN = [name for name in OPTIMIZERS.names() if _own(name)]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_own_optimizer_class_is_covered():
    """The registry builds every StepwiseOptimizer of steepest.optim (the tests below iterate it)."""
    covered = {type(build(name, [torch.zeros(2, requires_grad=True)])) for name in OWN}
    defined = {c for c in _subclasses(StepwiseOptimizer) if c.__module__.startswith("steepest.optim.")}
    assert defined <= covered, defined - covered


def step_with_flag(opt, flag):
    """`step(found_inf=flag)`, and for AdaHessian (its own `step`) also the attribute `found_inf`, as
    GradScaler hands it to torch's fused optimizers: both must work."""
    if isinstance(opt, so.AdaHessian) and int(opt.state_dict()["state"].get(0, {}).get("step", 0)) % 2:
        opt.found_inf = flag
        try:
            opt.step()
        finally:
            del opt.found_inf
    else:
        opt.step(found_inf=flag)


def set_grads(opt, params, seed, poison):
    """Gradients of a cubic loss (a nonzero Hessian for AdaHessian), NaN in one element where `poison`."""
    g = torch.Generator().manual_seed(seed)
    loss = 0
    for p in params:
        c, d = torch.randn(p.shape, generator=g, dtype=p.dtype), torch.randn(p.shape, generator=g, dtype=p.dtype)
        if poison:
            c.view(-1)[0], d.view(-1)[0] = float("nan"), float("nan")
        loss = loss + (c * p**3).sum() + (d * p).sum()
        p.grad = None
    loss.backward(create_graph=isinstance(opt, so.AdaHessian))


def snapshot(opt, params):
    return [p.detach().clone() for p in params], {p: {k: v.clone() for k, v in opt.state[p].items()} for p in params if opt.state.get(p)}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for k in sa["state"][i]:
            assert same(sa["state"][i][k], sb["state"][i][k]), (i, k)


FLAGS = [1, 0, 1, 0, 0, 1, 1, 0]  # a skipped first step (the state is created, then removed by the caller)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("name", OWN)
def test_found_inf_skips_on_the_device_and_a_taken_step_is_a_plain_step(name, impl):
    torch.manual_seed(0)
    init = [torch.randn(s) * 0.5 for s in SHAPES]
    ps, qs = [[t.clone().requires_grad_(True) for t in init] for _ in range(2)]
    a, b = build(name, ps, impl=impl), build(name, qs, impl=impl)
    for i, skip in enumerate(FLAGS):
        set_grads(a, ps, seed=i, poison=skip)
        if skip:
            params, state = snapshot(a, ps)
            generator = a.generator.get_state() if hasattr(a, "generator") else None
            step_with_flag(a, torch.ones(()))
            assert all(same(p.detach(), old) for p, old in zip(ps, params))
            for p in ps:
                old = state.get(p) or {"step": torch.zeros(()), **a._init_state(p, a.param_groups[0])}
                for k in a.state_keys:  # every device state tensor as it was (fresh on a first step)
                    assert same(a.state[p][k], old[k]), k
                assert a.state[p]["step"] == old["step"] + 1  # the contract: the count advances
            # what the caller (DeviceSkip) does once the flag is on the host: the host-side state back
            for p in ps:
                if p in state:
                    a.state[p]["step"] = state[p]["step"]
                else:
                    del a.state[p]
            if generator is not None:  # AdaHessian's Hutchinson draws (DeviceSkip reads its flag first)
                a.generator.set_state(generator)
        else:
            step_with_flag(a, torch.zeros(()))
            set_grads(b, qs, seed=i, poison=False)
            b.step()
            assert all(same(p.detach(), q.detach()) for p, q in zip(ps, qs))
            assert_same_state(a, b)


@pytest.mark.parametrize("flag", [torch.ones(1, dtype=torch.float32), torch.tensor(True), torch.tensor(2.0, dtype=torch.float64)])
def test_found_inf_accepts_one_element_and_bool_flags(flag):
    w = torch.ones(3, requires_grad=True)
    opt = so.Lion([w], lr=0.1, impl="foreach")
    w.grad = torch.ones(3)
    opt.step(found_inf=flag)
    assert torch.equal(w.detach(), torch.ones(3)) and torch.equal(opt.state[w]["exp_avg"], torch.zeros(3))
    opt.step(found_inf=torch.zeros(1, dtype=flag.dtype))
    assert torch.equal(w.detach(), torch.full((3,), 0.9))


@pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_found_inf_step_equals_the_foreach_step_in_one_graph():
    """impl="compiled" with found_inf (the CUDA default, here on the CPU): one graph for every step,
    skipped or not (the flag is a graph input), no graph break; skipped steps keep every bit; taken
    steps equal the foreach step to rtol 1e-13 in float64, not bit for bit: inductor computes the
    update in one loop of its own generated C++ (the C compiler may contract multiply-adds, and
    the bias corrections are reassociated), so the last bits differ: measured <= 4e-16 relative
    (2-3 ulp) after 4 steps; 1e-13 leaves room for other CPUs' vector widths."""
    from torch._dynamo.utils import counters

    torch.manual_seed(1)
    init = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
    ps, qs = [[t.clone().requires_grad_(True) for t in init] for _ in range(2)]
    hp = dict(lr=1e-2, weight_decay=0.01)
    a, b = so.Lamb(ps, impl="compiled", **hp), so.Lamb(qs, impl="foreach", **hp)
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    for i, skip in enumerate([0, 1, 0, 0]):
        set_grads(a, ps, seed=i, poison=skip)
        before = [p.detach().clone() for p in ps]
        moments = [a.state[p]["exp_avg_sq"].clone() for p in ps] if a.state else None
        a.step(found_inf=torch.tensor(float(skip)))
        if skip:
            assert all(same(p.detach(), old) for p, old in zip(ps, before))
            assert all(same(a.state[p]["exp_avg_sq"], m) for p, m in zip(ps, moments))
            for p in ps:
                a.state[p]["step"] -= 1  # the caller's part
        else:
            set_grads(b, qs, seed=i, poison=False)
            b.step()
            for p, q in zip(ps, qs):
                assert torch.allclose(p.detach(), q.detach(), rtol=1e-13, atol=1e-15)
                assert torch.allclose(a.state[p]["exp_avg"], b.state[q]["exp_avg"], rtol=1e-13, atol=1e-15)
        for opt in (a, b):  # a schedule: no recompilation
            opt.param_groups[0]["lr"] *= 0.9
    assert counters["stats"]["unique_graphs"] - graphs == 1
    assert so.Lamb.foreach_step in base._FOUND_INF and so.Lamb.foreach_step not in base._UNCOMPILABLE  # no fallback
    assert sum(counters["graph_break"].values()) == breaks


def test_a_compile_failure_falls_back_to_the_plain_select_with_a_warning(monkeypatch):
    from torch._dynamo.exc import InternalTorchDynamoError

    def broken(*args, **kwargs):
        raise InternalTorchDynamoError("no backend on this machine")

    monkeypatch.setitem(base._FOUND_INF, so.Lion.foreach_step, broken)
    monkeypatch.setattr(base, "_UNCOMPILABLE", set())
    ws = [torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)]
    a, b = so.Lion([ws[0]], lr=0.1, impl="compiled"), so.Lion([ws[1]], lr=0.1, impl="foreach")
    for flag in (0.0, 1.0, 0.0):
        for w in ws:
            w.grad = torch.full((3,), float("nan") if flag else 1.0)
        with pytest.warns(RuntimeWarning, match="torch.compile failed") if not base._UNCOMPILABLE else contextlib.nullcontext():
            a.step(found_inf=torch.tensor(flag))
        b.step(found_inf=torch.tensor(flag))
        assert same(ws[0].detach(), ws[1].detach()) and same(a.state[ws[0]]["exp_avg"], b.state[ws[1]]["exp_avg"])
    assert torch.allclose(ws[0].detach(), torch.full((3,), 0.8))  # two steps of lr * sign, the NaN one skipped


# ---- DeviceSkip hands steepest's own optimizers the flag ------------------------------------------

def skip_run(name, poison, monkeypatch=None, steps=8, precision=None):
    """A small regression trained through DeviceSkip on the device path (on the CPU), NaN batches at `poison`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = build(name, list(model.parameters()), impl="foreach")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8) if precision == "fp16" else None
    skip = DeviceSkip(opt, scaler, on_device=True)
    seen, copied, step = [], [], opt.step

    def spy(*args, **kwargs):
        seen.append(getattr(opt, "found_inf", None))
        return step(*args, **kwargs)

    opt.step = spy
    g = torch.Generator().manual_seed(1)
    for i in range(steps):
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        if i in poison:
            x[0, 0] = float("nan")
        loss = nn.functional.mse_loss(model(x), y)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        skip.step(torch.isfinite(loss), (lambda: scaler.step(opt)) if scaler else opt.step)
        copied.append(list(skip._guarded))
        opt.zero_grad(set_to_none=True)
    skip.settle()
    return model, opt, seen, copied


@pytest.mark.parametrize("name,poison,precision", [("lamb", [0, 3], None), ("nadam", [2, 5], None), ("novograd", [0, 4, 5], None),
                                                   ("lion", [3], "fp16")])
def test_device_skip_hands_own_optimizers_the_flag_and_equals_copy_and_select(monkeypatch, name, poison, precision):
    model, opt, seen, copied = skip_run(name, poison, precision=precision)
    # the found_inf path: the flag reached the step, and no parameter or state tensor was copied
    # (on the CPU the step counts, 0-d CPU tensors on the flag's device, are the only tensors selected)
    assert all(isinstance(f, torch.Tensor) for f in seen) and len(seen) == 8 - (len(poison) if precision else 0)
    written = {id(t) for t in model.parameters()} | {id(s[k]) for s in opt.state.values() for k in opt.state_keys}
    assert all(id(t) not in written and t.dim() == 0 for guarded in copied for t in guarded)

    monkeypatch.setattr(skip_module, "StepwiseOptimizer", type("NotOwn", (), {}))  # the copy-and-select path
    old_model, old_opt, old_seen, old_copied = skip_run(name, poison, precision=precision)
    assert all(f is None for f in old_seen) and any(len(g) > 2 * len(list(model.parameters())) for g in old_copied)
    for a, b in zip(model.state_dict().values(), old_model.state_dict().values()):
        assert same(a, b)
    assert_same_state(opt, old_opt)
    assert all(int(s["step"]) == 8 - len(poison) for s in opt.state.values())


@pytest.mark.parametrize("bad", [1.0, True, "yes", torch.zeros(2), torch.zeros(0)])
def test_a_flag_that_is_not_one_element_tensor_is_refused_by_name(bad):
    p = torch.nn.Parameter(torch.ones(3))
    opt = so.create("lion", [p], group_params=False, lr=1e-2)
    p.grad = torch.ones(3)
    with pytest.raises(TypeError, match="found_inf must be a 0-d or one-element tensor"):
        opt.step(found_inf=bad)
    assert torch.equal(p.detach(), torch.ones(3))
