"""The gradient noise scale on linear regression with Gaussian noise, where it has a closed form."""

import pytest
import torch
from torch import nn

from steepest.cli import main
from steepest.tune.batch_size import estimate_noise_scale, regime


def test_noise_scale_matches_closed_form_within_10_percent():
    d, sigma = 10, 1.0
    w_star = torch.linspace(-1, 1, d, dtype=torch.float64)
    delta = torch.full((d,), 0.3, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta)[None])

    def sample(n, gen):
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        y = x @ w_star + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
        return x, y[:, None]

    loss = lambda out, y: 0.5 * ((out - y) ** 2).mean()  # noqa: E731
    # per-sample gradient g = ((w - w*).x - eps) x: G = delta, Sigma = (|delta|^2 + sigma^2) I + delta delta^T
    grad_sq = float(delta @ delta)
    trace = d * (grad_sq + sigma**2) + grad_sq
    est = estimate_noise_scale(model, loss, sample, b_small=8, b_big=512, iterations=400, beta=0.99, seed=1)
    assert est.grad_sq == pytest.approx(grad_sq, rel=0.1)
    assert est.trace_sigma == pytest.approx(trace, rel=0.1)
    assert est.b_simple == pytest.approx(trace / grad_sq, rel=0.1)


def test_regimes_and_cli(capsys):
    assert regime(4, 100).startswith("perfect scaling")
    assert regime(128, 100).startswith("diminishing")
    assert regime(4096, 100).startswith("stagnation")
    assert main(["batch-size", "--iterations", "5", "--warmup-steps", "5", "--big", "256"]) == 0
    out = capsys.readouterr().out
    assert "B_simple" in out and "recommended batch" in out


def test_noise_scale_callback_logs_during_training(tmp_path):
    from steepest.track import read_series

    assert main(["train", "--run-dir", str(tmp_path / "r"), "-q", "--set", "trainer.max_epochs=3",
                 "--set", "callbacks=[{name: noise_scale, every_n_steps: 20, iterations: 3}]"]) == 0
    series = read_series(tmp_path / "r" / "metrics.db", "noise_scale")
    assert [s for s, _ in series] == [20, 40, 60] and all(v > 0 for _, v in series)
