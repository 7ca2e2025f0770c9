"""The gradient noise scale on linear regression with Gaussian noise, where it has a closed form:
per-sample gradient g = ((w - w*).x - eps) x with x ~ N(0, I), eps ~ N(0, sigma^2), w - w* = delta:
G = delta, Sigma = (|delta|^2 + sigma^2) I + delta delta^T, so |G|^2 = |delta|^2 and
tr(Sigma) = d (|delta|^2 + sigma^2) + |delta|^2."""

import math

import pytest
import torch
from torch import nn

from steepest.cli import main
from steepest.data import DataInfo, DeviceLoader, Split
from steepest.training.trainer import Trainer, TrainerOptions
from steepest.tune import NoiseScaleCallback, estimate_noise_scale, regime
from steepest.tune.batch_size import doubling_speedup, noise_scale_result

D, SIGMA = 100, 1.0  # many dimensions: tr(Sigma) is a sum of many terms and is estimated tightly
W_STAR = torch.linspace(-1, 1, D, dtype=torch.float64)
DELTA = torch.full((D,), 0.1, dtype=torch.float64)
GRAD_SQ = float(DELTA @ DELTA)
TRACE = D * (GRAD_SQ + SIGMA**2) + GRAD_SQ


def linear_model():
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((W_STAR + DELTA)[None])
    return model


def sample(n, gen):
    x = torch.randn(n, D, generator=gen, dtype=torch.float64)
    y = x @ W_STAR + SIGMA * torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y[:, None]


def half_mse(out, y):
    return 0.5 * ((out - y) ** 2).mean()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models (tests/conftest.py)


def test_noise_scale_matches_closed_form_within_10_percent():
    est = estimate_noise_scale(linear_model(), half_mse, sample, b_small=32, b_big=512, iterations=100, beta=0.99, seed=1)
    assert est.grad_sq == pytest.approx(GRAD_SQ, rel=0.1)
    assert est.trace_sigma == pytest.approx(TRACE, rel=0.1)
    assert est.b_simple == pytest.approx(TRACE / GRAD_SQ, rel=0.1)


def test_regimes_follow_the_doubling_speedup():
    assert regime(4, 100).startswith("perfect scaling") and doubling_speedup(4, 100) > 1.9
    assert regime(128, 100).startswith("diminishing")
    assert regime(4096, 100).startswith("stagnation") and doubling_speedup(4096, 100) < 1.02
    assert doubling_speedup(25, 100) == pytest.approx(5 / 3)  # the b/4 boundary
    r = noise_scale_result(trace=TRACE, grad_sq=GRAD_SQ, batch_size=64, lr=0.1)
    assert r.recommended_batch == 256 and r.recommended_lr == pytest.approx(0.1 * 256 / 64)  # B_simple = 201
    assert r.regime.startswith("diminishing")  # 201 / 4 < 64 < 4 * 201


def test_batch_size_cli(capsys):
    assert main(["batch-size", "--iterations", "5", "--warmup-steps", "5", "--big", "256"]) == 0
    out = capsys.readouterr().out
    assert "B_simple" in out and "recommended batch" in out and "current batch 64" in out


def trainer_on_gaussian_problem(accumulate, callback, batch_size=256, steps=300, seed=0):
    gen = torch.Generator().manual_seed(0)
    x, y = sample(50_000, gen)
    info = DataInfo("gaussian", "regression", (D,), 1)
    model = linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay at w* + delta: G and Sigma are known
    options = TrainerOptions(max_steps=steps, accumulate=accumulate, log_every_n_steps=1000)
    return Trainer(model, opt, half_mse, DeviceLoader(x, y, batch_size, seed=seed), options=options, info=info,
                   eval_data={"val": Split(x[:10], y[:10])}, callbacks=[callback])


@pytest.mark.parametrize(("accumulate", "batch_size"), [(8, 256), (1, 512)], ids=["micro-batch-hook", "probe"])
def test_noise_scale_callback_within_10_percent(accumulate, batch_size):
    """Small batch 32 (a micro-batch of 8, or the probe), big batch the whole step."""
    cb = NoiseScaleCallback(every_n_steps=1, log_every_n_steps=300, probe_size=32, beta=0.99)
    trainer_on_gaussian_problem(accumulate, cb, batch_size=batch_size, steps=300).fit()
    (step, b_simple), = cb.history
    assert step == 300 and b_simple == pytest.approx(TRACE / GRAD_SQ, rel=0.1)


def test_a_skipped_non_finite_step_leaves_the_noise_average_as_it_was():
    """The trainer decides a NaN step's skip on the device after the callback's hook ran, so the hook
    may see a non-finite gradient: that estimate must not enter the average. Here the gradient turns
    NaN in the hook from step 3 on (the weights follow: lr 0 times NaN); the average keeps steps 1-2."""
    class NanAt(NoiseScaleCallback):
        def on_before_optimizer_step(self, trainer):
            if trainer.state.step == 2:  # the third step: its gradient turns NaN, as a NaN batch's would
                next(trainer.unwrapped_model.parameters()).grad.fill_(float("nan"))
            super().on_before_optimizer_step(trainer)

    cb = NanAt(every_n_steps=1, log_every_n_steps=5, probe_size=32, beta=0.5)
    trainer_on_gaussian_problem(1, cb, batch_size=512, steps=5).fit()
    (step, b_simple), = cb.history
    assert step == 5 and math.isfinite(b_simple) and b_simple > 0


def test_callback_reads_the_first_micro_batch_gradient_exactly():
    """The hook's |g_small|^2 is the first micro-batch's own gradient norm (not a rescaled share)."""
    seen = {}

    class Spy(NoiseScaleCallback):
        def on_step_start(self, trainer, batches):
            super().on_step_start(trainer, batches)
            x, y = batches[0]
            model = trainer.unwrapped_model
            (g,) = torch.autograd.grad(half_mse(model(x), y), [model.weight])
            seen["direct"] = float(g.pow(2).sum())

        def on_before_optimizer_step(self, trainer):
            seen["hook"] = float(self.first_grad_sq(trainer))
            super().on_before_optimizer_step(trainer)

    trainer_on_gaussian_problem(4, Spy(every_n_steps=1), steps=1).fit()
    assert seen["hook"] == pytest.approx(seen["direct"], rel=1e-10)


def test_the_first_micro_batch_gradient_is_exact_under_a_class_weighted_loss():
    """A loss with its own normalizer (cross entropy with class weights: a weighted mean) shares the
    step by weight, not by samples: |g_small|^2 must still be the first micro-batch's own gradient."""
    from steepest.losses.modules import CrossEntropy

    seen = {}
    loss_fn = CrossEntropy(weight=[1.0, 9.0])

    class Spy(NoiseScaleCallback):
        def on_step_start(self, trainer, batches):
            super().on_step_start(trainer, batches)
            x, y = batches[0]
            model = trainer.unwrapped_model
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y, weight=torch.tensor([1.0, 9.0])),
                                       [model.weight])
            seen["direct"] = float(g.pow(2).sum())

        def on_before_optimizer_step(self, trainer):
            seen["hook"] = float(self.first_grad_sq(trainer))
            super().on_before_optimizer_step(trainer)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen)
    y = (torch.rand(256, generator=gen) < 0.2).long()  # the rare class weighs 9x: micro-batch shares differ from 1/4
    model = nn.Linear(4, 2, bias=False)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), loss_fn, DeviceLoader(x, y, 64, seed=0),
                      options=TrainerOptions(max_steps=1, accumulate=4, log_every_n_steps=1000),
                      info=DataInfo("toy", "classification", (4,), 2), eval_data={"val": Split(x[:10], y[:10])},
                      callbacks=[Spy(every_n_steps=1)])
    trainer.fit()
    share = float(trainer.engine.micro_batch_weights[0])
    assert abs(share - 0.25) > 0.01  # by weight, not by samples: the old (n_step / n_first)^2 rescaling was wrong here
    assert seen["hook"] == pytest.approx(seen["direct"], rel=1e-5)  # float32 loss times a float64 share


def test_callback_leaves_training_bit_identical():
    """Measuring (probe with dropout in a forked RNG) must not change the run."""
    from steepest.config import load_recipe
    from steepest.run import build_run

    def final_weights(with_callback):
        recipe = load_recipe("digits_mlp", ["trainer.max_steps=30", "trainer.max_epochs=null", "checkpoint.enabled=false"])
        cb = NoiseScaleCallback(every_n_steps=5, log_every_n_steps=10)
        run = build_run(recipe, extra_callbacks=[cb] if with_callback else [])
        run.trainer.fit()
        return [p.detach().clone() for p in run.trainer.unwrapped_model.parameters()], cb.history

    plain, _ = final_weights(False)
    measured, history = final_weights(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, measured))
    assert [s for s, _ in history] == [10, 20, 30] and all(b > 0 for _, b in history)


def test_noise_scale_monitor_logs_during_training(tmp_path):
    from steepest.track import read_series

    assert main(["train", "--run-dir", str(tmp_path / "r"), "-q", "--set", "trainer.max_epochs=3",
                 "--set", "callbacks=[{name: noise_scale, every_n_steps: 20, iterations: 3}]"]) == 0
    series = read_series(tmp_path / "r" / "metrics.db", "noise_scale")
    assert [s for s, _ in series] == [20, 40, 60] and all(v > 0 for _, v in series)


def test_finite_training_set_correction():
    """Big batches drawn without replacement from N samples vary less than tr(Sigma)/B: the estimator
    corrects by (N - B) / (N - 1). Exact G and Sigma from the per-sample gradients of the set.
    Measured over data seeds 0-7 (ratio to the exact value, corrected / naive): 100 iterations
    0.945-1.066 / 1.237-1.437, 400 iterations 0.974-1.012 / 1.282-1.413; 300 here."""
    from steepest.tune.batch_size import sampler_from

    gen = torch.Generator().manual_seed(3)
    x, y = sample(600, gen)
    model = linear_model()
    per_sample = (x @ (W_STAR + DELTA) - y[:, 0])[:, None] * x  # gradient of 0.5 (w.x - y)^2 per sample
    g = per_sample.mean(0)
    exact = float((per_sample - g).pow(2).sum(1).mean() / g.pow(2).sum())
    corrected = estimate_noise_scale(model, half_mse, sampler_from(x, y), b_small=32, b_big=400, iterations=300, beta=0.99)
    assert corrected.b_simple == pytest.approx(exact, rel=0.1)
    draw = sampler_from(x, y)
    naive = estimate_noise_scale(model, half_mse, lambda n, gen: draw(n, gen), b_small=32, b_big=400, iterations=300, beta=0.99)
    assert naive.b_simple > 1.2 * exact  # uncorrected, the too-clean big batch inflates tr(Sigma) and shrinks |G|^2


def test_noise_scale_steps_callback_from_a_recipe(tmp_path):
    from steepest.track import read_series

    assert main(["train", "--run-dir", str(tmp_path / "r"), "-q", "--set", "trainer.max_epochs=3",
                 "--set", "callbacks=[{name: noise_scale_steps, every_n_steps: 2, log_every_n_steps: 20}]"]) == 0
    series = read_series(tmp_path / "r" / "metrics.db", "noise_scale")
    assert [s for s, _ in series] == [20, 40, 60] and all(v > 0 for _, v in series)
