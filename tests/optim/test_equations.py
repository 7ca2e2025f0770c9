"""Each of steepest's own optimizers against its paper's equations, written out here per tensor,
in float64 over many steps with random hyperparameters; plus hand-computed golden single steps."""

import math
import shutil

import pytest
import torch

import steepest.optim as so

STEPS = 60


def problem(seed: int):
    """Parameters of several shapes (incl. a zero tensor) and a deterministic gradient sequence."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (7,), (2, 3, 4), (4,)]
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    params[3].zero_()  # a zero-norm tensor exercises the "trust ratio = 1" rule
    grads = [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(STEPS)]
    return params, grads


def run(opt_factory, params, grads):
    ps = [p.clone().requires_grad_(True) for p in params]
    opt = opt_factory(ps)
    for gs in grads:
        for p, gr in zip(ps, gs):
            p.grad = gr.clone()
        opt.step()
    return [p.detach() for p in ps]


# ---- the equations, independent of the library ---------------------------------------------------

def lion_ref(params, grads, lr, b1, b2, wd):
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    for gs in grads:
        for i, g in enumerate(gs):
            c = b1 * m[i] + (1 - b1) * g
            w[i] = w[i] - lr * (torch.sign(c) + wd * w[i])
            m[i] = b2 * m[i] + (1 - b2) * g
    return w


def lamb_ref(params, grads, lr, b1, b2, eps, wd):
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            r = (m[i] / (1 - b1**t)) / (torch.sqrt(v[i] / (1 - b2**t)) + eps) + wd * w[i]
            wn, rn = torch.linalg.vector_norm(w[i]), torch.linalg.vector_norm(r)
            ratio = wn / rn if (wn > 0 and rn > 0) else 1.0
            w[i] = w[i] - lr * ratio * r
    return w


def lars_ref(params, grads, lr, mu, wd, eta):
    w = [p.clone() for p in params]
    v = [torch.zeros_like(p) for p in params]
    for gs in grads:
        for i, g in enumerate(gs):
            wn, gn = torch.linalg.vector_norm(w[i]), torch.linalg.vector_norm(g)
            local = eta * wn / (gn + wd * wn) if (wn > 0 and gn > 0) else 1.0
            v[i] = mu * v[i] + lr * local * (g + wd * w[i])
            w[i] = w[i] - v[i]
    return w


def novograd_ref(params, grads, lr, b1, b2, eps, wd):
    w = [p.clone() for p in params]
    m = [None] * len(params)
    v = [None] * len(params)
    for gs in grads:
        for i, g in enumerate(gs):
            n2 = (g * g).sum()
            v[i] = n2 if v[i] is None else b2 * v[i] + (1 - b2) * n2
            d = g / (torch.sqrt(v[i]) + eps) + wd * w[i]
            m[i] = d if m[i] is None else b1 * m[i] + d
            w[i] = w[i] - lr * m[i]
    return w


def ema_momentum_ref(params, grads, lr, beta, wd, nesterov):
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    for gs in grads:
        for i, g in enumerate(gs):
            g = g + wd * w[i]
            m[i] = beta * m[i] + (1 - beta) * g
            w[i] = w[i] - lr * ((beta * m[i] + (1 - beta) * g) if nesterov else m[i])
    return w


def radam_lars_ref(params, grads, lr, b1, b2, eps, wd):
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    rho_inf = 2 / (1 - b2) - 1
    for t, gs in enumerate(grads, start=1):
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        for i, g in enumerate(gs):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat = m[i] / (1 - b1**t)
            if rho > 5:
                r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                u = mhat * r / (torch.sqrt(v[i] / (1 - b2**t)) + eps)
            else:
                u = mhat
            u = u + wd * w[i]
            wn, un = torch.linalg.vector_norm(w[i]), torch.linalg.vector_norm(u)
            ratio = wn / un if (wn > 0 and un > 0) else 1.0
            w[i] = w[i] - lr * ratio * u
    return w


def nadam_ref(params, grads, lr, b1, b2, eps, wd, psi, decoupled):
    """torch.optim.NAdam's update (Dozat 2016 with the 0.96^(t psi) momentum schedule)."""
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    mu_product = 1.0
    for t, gs in enumerate(grads, start=1):
        mu, mu_next = b1 * (1 - 0.5 * 0.96 ** (t * psi)), b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product *= mu
        for i, g in enumerate(gs):
            if decoupled:
                w[i] = w[i] * (1 - lr * wd)
            else:
                g = g + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            d = torch.sqrt(v[i] / (1 - b2**t)) + eps
            w[i] = w[i] - lr * (1 - mu) / (1 - mu_product) * g / d - lr * mu_next / (1 - mu_product * mu_next) * m[i] / d
    return w


def radam_ref(params, grads, lr, b1, b2, eps, wd, decoupled):
    """torch.optim.RAdam's update (Liu et al. 2020; eps added to sqrt(v), not to the bias-corrected root)."""
    w = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    rho_inf = 2 / (1 - b2) - 1
    for t, gs in enumerate(grads, start=1):
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        for i, g in enumerate(gs):
            if decoupled:
                w[i] = w[i] * (1 - lr * wd)
            else:
                g = g + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat = m[i] / (1 - b1**t)
            if rho > 5:
                r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                w[i] = w[i] - lr * r * mhat * math.sqrt(1 - b2**t) / (torch.sqrt(v[i]) + eps)
            else:
                w[i] = w[i] - lr * mhat
    return w


def rand_hp(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))  # noqa: E731
    return u


CASES = {
    "lion": (lambda u: dict(lr=u(1e-4, 1e-2), betas=(u(0.8, 0.95), u(0.95, 0.999)), weight_decay=u(0, 0.5)),
             lambda P, G, h: lion_ref(P, G, h["lr"], *h["betas"], h["weight_decay"]), so.Lion),
    "lamb": (lambda u: dict(lr=u(1e-3, 1e-1), betas=(u(0.8, 0.95), u(0.95, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1)),
             lambda P, G, h: lamb_ref(P, G, h["lr"], *h["betas"], h["eps"], h["weight_decay"]), so.Lamb),
    "lars": (lambda u: dict(lr=u(0.5, 5), momentum=u(0.5, 0.95), weight_decay=u(0, 1e-2), trust_coefficient=u(1e-3, 2e-2)),
             lambda P, G, h: lars_ref(P, G, h["lr"], h["momentum"], h["weight_decay"], h["trust_coefficient"]), so.LARS),
    "novograd": (lambda u: dict(lr=u(1e-3, 1e-1), betas=(u(0.8, 0.97), u(0.9, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1)),
                 lambda P, G, h: novograd_ref(P, G, h["lr"], *h["betas"], h["eps"], h["weight_decay"]), so.NovoGrad),
    "ema_momentum": (lambda u: dict(lr=u(1e-3, 1e-1), momentum=u(0.5, 0.99), weight_decay=u(0, 0.1), nesterov=u(0, 1) > 0.5),
                     lambda P, G, h: ema_momentum_ref(P, G, h["lr"], h["momentum"], h["weight_decay"], h["nesterov"]), so.EMAMomentum),
    "radam_lars": (lambda u: dict(lr=u(1e-3, 1e-1), betas=(u(0.8, 0.95), u(0.99, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1)),
                   lambda P, G, h: radam_lars_ref(P, G, h["lr"], *h["betas"], h["eps"], h["weight_decay"]), so.RAdamLARS),
    "nadam": (lambda u: dict(lr=u(1e-3, 5e-2), betas=(u(0.8, 0.95), u(0.95, 0.999)), eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1),
                             momentum_decay=u(1e-3, 1e-2), decoupled_weight_decay=u(0, 1) > 0.5),
              lambda P, G, h: nadam_ref(P, G, h["lr"], *h["betas"], h["eps"], h["weight_decay"], h["momentum_decay"],
                                        h["decoupled_weight_decay"]), so.NAdam),
    # decoupled drawn first: seeds 0, 1, 2 give True, False, False (both forms of weight decay)
    "radam": (lambda u: dict(decoupled_weight_decay=u(0, 1) > 0.5, lr=u(1e-3, 5e-2), betas=(u(0.8, 0.95), u(0.9, 0.999)),
                             eps=u(1e-8, 1e-4), weight_decay=u(0, 0.1)),
              lambda P, G, h: radam_ref(P, G, h["lr"], *h["betas"], h["eps"], h["weight_decay"], h["decoupled_weight_decay"]),
              so.RAdam),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_paper_equations(name, impl, seed):
    sample, reference, cls = CASES[name]
    hp = sample(rand_hp(seed))
    params, grads = problem(seed)
    ours = run(lambda ps: cls(ps, impl=impl, **hp), params, grads)
    expected = reference(params, grads, hp)
    for a, b in zip(ours, expected):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11), (name, hp, (a - b).abs().max())


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path_equals_reference_path(name):
    sample, _, cls = CASES[name]
    hp = sample(rand_hp(7))
    params, grads = problem(7)
    fast = run(lambda ps: cls(ps, **hp), params, grads)  # the default: foreach on the CPU
    slow = run(lambda ps: cls(ps, impl="reference", **hp), params, grads)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)


def test_foreach_chunks_do_not_change_the_result(monkeypatch):
    """On the CPU the list function runs on cache-sized chunks of tensors; any chunking is exact."""
    import steepest.optim.base as base

    sample, _, cls = CASES["lamb"]
    hp = sample(rand_hp(3))
    params, grads = problem(3)
    whole = run(lambda ps: cls(ps, impl="foreach", **hp), params, grads)
    monkeypatch.setattr(base, "CPU_CHUNK_NUMEL", 8)
    assert len(list(base.chunks(params, 8))) == 4
    chunked = run(lambda ps: cls(ps, impl="foreach", **hp), params, grads)
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)


COMPILED = list(CASES)  # ~6 s per compilation on 2 cores: the CUDA default path, checked on the CPU


@pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_path_equals_reference_without_recompiling(name):
    """impl="compiled" (the CUDA default) is torch.compile of the list function; lr changes every step
    (a schedule) and bias corrections change too: one graph (two where a first-step or rectification
    branch flips), because those scalars are passed as 0-d tensors."""
    from torch._dynamo.utils import counters

    sample, _, cls = CASES[name]
    hp = sample(rand_hp(5))
    params, grads = problem(5)
    grads = grads[:8]

    def scheduled(impl):
        def factory(ps):
            opt = cls(ps, impl=impl, **hp)
            step = opt.step

            def step_with_schedule():
                opt.param_groups[0]["lr"] *= 0.9
                step()

            opt.step = step_with_schedule
            return opt
        return factory

    before = counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    fast = run(scheduled("compiled"), params, grads)
    assert sum(counters["graph_break"].values()) == breaks  # a break is a host read (.item()) inside step
    assert counters["stats"]["unique_graphs"] - before <= (2 if name in ("novograd", "radam_lars", "radam") else 1)
    slow = run(scheduled("reference"), params, grads)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13)


def test_compile_failure_falls_back_to_foreach_with_a_warning(monkeypatch):
    from torch._dynamo.exc import InternalTorchDynamoError

    from steepest.optim import base

    def broken(*args, **kwargs):
        raise InternalTorchDynamoError("no backend on this machine")

    monkeypatch.setitem(base._COMPILED, so.Lion.foreach_step, broken)
    monkeypatch.setattr(base, "_UNCOMPILABLE", set())
    params, grads = problem(3)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fast = run(lambda ps: so.Lion(ps, impl="compiled", lr=1e-2, weight_decay=0.1), params, grads)
    slow = run(lambda ps: so.Lion(ps, impl="reference", lr=1e-2, weight_decay=0.1), params, grads)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-13) for a, b in zip(fast, slow))


def test_impl_is_validated():
    with pytest.raises(ValueError, match="impl must be one of"):
        so.Lion([torch.zeros(2, requires_grad=True)], impl="fused")


# ---- golden single steps, computed by hand ------------------------------------------------------

def one_step(opt_cls, w, g, **hp):
    p = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([p], **hp)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return p.detach().tolist()


def test_golden_lion_step():
    # m0 = 0: c = 0.1 * g -> sign(g); w = w - lr * (sign(g) + wd * w)
    out = one_step(so.Lion, [1.0, -2.0], [0.5, 0.3], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    assert out == pytest.approx([1.0 - 0.1 * (1 + 0.5), -2.0 - 0.1 * (1 - 1.0)])


def test_golden_lamb_step():
    # t = 1: m_hat = g, v_hat = g^2, r = sign(g) (eps=0) + wd*w = [1, -1] + 0.1*[3, 4] = [1.3, -0.6]
    out = one_step(so.Lamb, [3.0, 4.0], [2.0, -5.0], lr=0.1, eps=0.0, weight_decay=0.1)
    r = [1.3, -0.6]
    ratio = 5.0 / math.hypot(*r)
    assert out == pytest.approx([3.0 - 0.1 * ratio * r[0], 4.0 - 0.1 * ratio * r[1]])


def test_golden_lars_step():
    # ||w|| = 5, ||g|| = 10, local = 0.01 * 5 / (10 + 0.1 * 5) = 0.05/10.5; v = lr * local * (g + 0.1 w)
    out = one_step(so.LARS, [3.0, 4.0], [6.0, 8.0], lr=2.0, momentum=0.9, weight_decay=0.1, trust_coefficient=0.01)
    local = 0.01 * 5 / 10.5
    assert out == pytest.approx([3.0 - 2.0 * local * 6.3, 4.0 - 2.0 * local * 8.4])


def test_golden_novograd_step():
    # v1 = ||g||^2 = 25, m1 = g / 5, w = w - lr * m1
    out = one_step(so.NovoGrad, [1.0, 1.0], [3.0, 4.0], lr=0.5, eps=0.0)
    assert out == pytest.approx([1.0 - 0.5 * 0.6, 1.0 - 0.5 * 0.8])


def test_trust_ratio_is_one_for_zero_weights_and_unadapted_groups():
    out = one_step(so.Lamb, [0.0, 0.0], [1.0, -1.0], lr=0.1, eps=0.0, weight_decay=0.0)
    assert out == pytest.approx([-0.1, 0.1])
    out = one_step(so.Lamb, [3.0, 4.0], [1.0, -1.0], lr=0.1, eps=0.0, weight_decay=0.0, adapt=False)
    assert out == pytest.approx([2.9, 4.1])


def test_adahessian_on_a_separable_quadratic():
    """For L = sum a_i w_i^2 / 2 the Hutchinson estimate z*(Hz) is exactly diag(a) = a, for any z."""
    a = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    w = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-4
    opt = so.AdaHessian([w], lr=lr, betas=(b1, b2), eps=eps)
    ref = w.detach().clone()
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    for t in range(1, 21):
        opt.zero_grad()
        (0.5 * (a * w * w).sum()).backward(create_graph=True)
        opt.step()
        g = a * ref
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * a * a
        ref = ref - lr * (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + eps)
    assert torch.allclose(w.detach(), ref, rtol=1e-10, atol=1e-12)


def test_adahessian_without_graph_explains_itself():
    w = torch.ones(2, requires_grad=True)
    (w * w).sum().backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        so.AdaHessian([w]).step()


def test_golden_ema_momentum_step():
    # m1 = (1 - beta) g = 0.2 * [1, -2]; w = w - lr * m1; nesterov: w - lr * (beta m1 + (1 - beta) g)
    out = one_step(so.EMAMomentum, [1.0, 1.0], [1.0, -2.0], lr=0.5, momentum=0.8)
    assert out == pytest.approx([1.0 - 0.5 * 0.2, 1.0 + 0.5 * 0.4])
    out = one_step(so.EMAMomentum, [1.0, 1.0], [1.0, -2.0], lr=0.5, momentum=0.8, nesterov=True)
    assert out == pytest.approx([1.0 - 0.5 * 0.36, 1.0 + 0.5 * 0.72])


def test_golden_radam_lars_step():
    # t = 1: rho_1 = 1 <= 5, so u = m_hat = g; r = g + wd w = [0.3, 0.4] + 0.1 [3, 4] = [0.6, 0.8], ||r|| = 1
    out = one_step(so.RAdamLARS, [3.0, 4.0], [0.3, 0.4], lr=0.1, weight_decay=0.1)
    assert out == pytest.approx([3.0 - 0.1 * 5.0 * 0.6, 4.0 - 0.1 * 5.0 * 0.8])


def test_golden_adahessian_step():
    # L = w^2 (H = 2): g = 2w = 2, D = 2, m_hat = g, sqrt(v_hat) = |D| = 2; w = 1 - lr * (2 / (2 + eps) + wd * 1)
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = so.AdaHessian([w], lr=0.1, eps=0.5, weight_decay=0.2)
    (w * w).sum().backward(create_graph=True)
    opt.step()
    assert w.item() == pytest.approx(1.0 - 0.1 * (2 / 2.5 + 0.2))


def test_trust_options_lamb_max_trust_and_weight_norm_clamp():
    # r = [1.3, -0.6] as in the golden LAMB step; ||w|| = 5; ||r|| = 1.4318
    r = [1.3, -0.6]
    for kw, ratio in [({"max_trust": 2.0}, 2.0), ({"max_weight_norm": 1.0}, 1.0 / math.hypot(*r))]:
        out = one_step(so.Lamb, [3.0, 4.0], [2.0, -5.0], lr=0.1, eps=0.0, weight_decay=0.1, **kw)
        assert out == pytest.approx([3.0 - 0.1 * ratio * r[0], 4.0 - 0.1 * ratio * r[1]])


def test_lars_trust_clipping_caps_the_layer_rate_at_the_global_rate():
    # local = 0.5 * 5 / 10 = 0.25 > lr = 0.1: clipped to lr, i.e. v = lr * (local / lr clamped to 1) * g = 0.1 g
    out = one_step(so.LARS, [3.0, 4.0], [6.0, 8.0], lr=0.1, trust_coefficient=0.5, clip=True)
    assert out == pytest.approx([3.0 - 0.1 * 6.0, 4.0 - 0.1 * 8.0])
    out = one_step(so.LARS, [3.0, 4.0], [6.0, 8.0], lr=0.1, trust_coefficient=0.5)
    assert out == pytest.approx([3.0 - 0.1 * 0.25 * 6.0, 4.0 - 0.1 * 0.25 * 8.0])


@pytest.mark.parametrize("nesterov", [False, True])
def test_ema_momentum_is_torch_sgd_with_lr_scaled_by_one_minus_beta(nesterov):
    """m_t = (1 - beta) v_t exactly (both buffers start at zero), so the EMA form is torch.optim.SGD at lr (1 - beta)."""
    beta, lr, wd = 0.85, 0.07, 0.01
    params, grads = problem(11)
    ours = run(lambda ps: so.create("momentum", ps, ema=True, lr=lr, momentum=beta, weight_decay=wd, nesterov=nesterov),
               params, grads)
    twin = run(lambda ps: torch.optim.SGD(ps, lr=lr * (1 - beta), momentum=beta, weight_decay=wd, nesterov=nesterov), params, grads)
    for a, b in zip(ours, twin):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)


def test_adahessian_fast_path_equals_reference_path():
    """A coupled quadratic with a conv-shaped tensor (spatial averaging); the same seed draws the same z."""
    g = torch.Generator().manual_seed(4)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    hess = a @ a.T + torch.eye(12, dtype=torch.float64)

    def trajectory(impl):
        ws = [torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(),
              torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_()]
        opt = so.AdaHessian(ws, lr=0.05, betas=(0.8, 0.99), weight_decay=0.01, hessian_power=0.7, seed=3, impl=impl)
        for _ in range(20):
            opt.zero_grad()
            flat = torch.cat([w.reshape(-1) for w in ws])
            (0.5 * flat @ hess @ flat).backward(create_graph=True)
            opt.step()
        return [w.detach() for w in ws]

    for x, y in zip(trajectory("foreach"), trajectory("reference")):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_parameter_that_joins_later_takes_its_own_step_count(name, impl):
    """Each parameter keeps its own step count (torch.optim's convention): one whose gradients start
    at step 4 (gradual unfreezing) steps exactly as the paper's equations from its own step 1."""
    sample, reference, cls = CASES[name]
    hp = sample(rand_hp(3))
    params, grads = problem(3)
    late = 2  # this tensor has no gradient for the first 3 steps
    ps = [p.clone().requires_grad_(True) for p in params]
    opt = cls(ps, impl=impl, **hp)
    for t, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(ps, gs)):
            p.grad = None if (i == late and t < 3) else g.clone()
        opt.step()
    early = reference([p for i, p in enumerate(params) if i != late], [[g for i, g in enumerate(gs) if i != late] for gs in grads], hp)
    (joined,) = reference([params[late]], [[gs[late]] for gs in grads[3:]], hp)
    expected = early[:late] + [joined] + early[late:]
    for i, (a, b) in enumerate(zip(ps, expected)):
        assert torch.allclose(a.detach(), b, rtol=1e-9, atol=1e-11), (name, i, (a.detach() - b).abs().max())
