"""`StepwiseOptimizer.step(found_inf=...)` on CUDA with the default impl="compiled" (skipped elsewhere;
tests/optim/test_found_inf.py checks the same on the CPU): the select runs inside the compiled step,
with no host synchronization (torch.cuda.set_sync_debug_mode("error")), a skipped step keeps every
parameter and state tensor, a taken one follows the uncompiled foreach step; and DeviceSkip hands
these optimizers the flag, with no copy of their parameters or state."""

import pytest
import torch
from torch import nn

import steepest.optim as so
from steepest.optim import base
from steepest.training.skip import DeviceSkip

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OWN = {"lamb": dict(lr=1e-2, weight_decay=0.01), "lion": dict(lr=1e-3, weight_decay=0.1), "nadam": dict(lr=1e-2, weight_decay=0.01),
       "radam": dict(lr=1e-2), "novograd": dict(lr=1e-2), "lars": dict(lr=1.0, weight_decay=1e-4),
       "momentum": dict(lr=0.1, ema=True), "rangerlars": dict(lr=1e-2)}
SHAPES = [(256, 128), (128,), (8, 3, 3, 3), ()]
WARMUP = 8  # steps before the check: every graph compiled (NovoGrad's first step, RAdam's rectification)


def build(name, params, **kwargs):
    opt = so.create(name, params, group_params=False, **OWN[name], **kwargs)
    return getattr(opt, "optimizer", opt)  # rangerlars: the RAdamLARS inside the Lookahead


@pytest.mark.parametrize("name", list(OWN))
def test_compiled_found_inf_step_skips_on_the_device_without_a_host_sync(name):
    g = torch.Generator(device="cuda").manual_seed(0)
    init = [torch.randn(s, device="cuda", generator=g) * 0.5 for s in SHAPES]
    ps, qs = [[t.clone().requires_grad_(True) for t in init] for _ in range(2)]
    a, b = build(name, ps), build(name, qs, impl="foreach")
    assert a.resolve_impl(a.param_groups[0], ps[0].device) == "compiled"
    flags = [0] * WARMUP + [1, 0, 1, 1, 0, 0]
    zero, one = torch.zeros((), device="cuda"), torch.ones((), device="cuda")
    for i, skip in enumerate(flags):
        grads = [torch.randn(s, device="cuda", generator=g) for s in SHAPES]
        if skip:
            for x in grads:
                x.view(-1)[0] = float("nan")
        for p, q, x in zip(ps, qs, grads):
            p.grad, q.grad = x.clone(), x.clone()
        before = [p.detach().clone() for p in ps], {p: {k: v.clone() for k, v in a.state[p].items()} for p in a.state}
        torch.cuda.synchronize()
        if i >= WARMUP:
            torch.cuda.set_sync_debug_mode("error")
        try:
            a.step(found_inf=one if skip else zero)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if skip:
            assert all(torch.equal(p.detach(), old) for p, old in zip(ps, before[0]))
            for p in ps:
                assert all(torch.equal(a.state[p][k], before[1][p][k]) for k in a.state_keys)
                a.state[p]["step"] = before[1][p]["step"]  # the caller's part (DeviceSkip.settle)
        else:
            b.step()
            for p, q in zip(ps, qs):  # float32: the compiled step takes its scalars as float32 0-d tensors
                assert torch.allclose(p.detach(), q.detach(), rtol=1e-5, atol=1e-6), (name, i)
    assert type(a).foreach_step in base._FOUND_INF and type(a).foreach_step not in base._UNCOMPILABLE


@pytest.mark.parametrize("name", ["lamb", "nadam"])
def test_device_skip_hands_the_flag_to_own_optimizers_on_cuda(name):
    """No copy of the parameters or state is taken (the select buffers stay empty), no host sync
    after the first step, and a NaN step leaves the weights as they were (the step count is put
    back by `settle`, one step late)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)).cuda()
    opt = build(name, list(model.parameters()))
    skip = DeviceSkip(opt)
    x, y = torch.randn(32, 64, device="cuda"), torch.randn(32, 4, device="cuda")
    for i in range(WARMUP + 4):
        poison = i == WARMUP + 1
        xb = x.clone()
        if poison:
            xb[0, 0] = float("nan")
        loss = nn.functional.mse_loss(model(xb), y)
        loss.backward()
        before = [p.detach().clone() for p in model.parameters()]
        torch.cuda.synchronize()
        if i >= WARMUP:
            torch.cuda.set_sync_debug_mode("error")
        try:
            skip.step(torch.isfinite(loss), opt.step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert skip._saved == [] and skip._guarded == []
        if poison:
            assert all(torch.equal(p.detach(), old) for p, old in zip(model.parameters(), before))
        opt.zero_grad(set_to_none=True)
    skip.settle()
    assert all(int(s["step"]) == WARMUP + 3 for s in opt.state.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
