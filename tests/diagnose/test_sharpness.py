"""Sharpness against the exact Hessian (torch.autograd.functional.hessian) of small models."""

import math

import pytest
import torch
from torch import nn

from steepest.cli import main
from steepest.diagnose.sharpness import hessian_trace, measure_sharpness, top_eigenvalue


def classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    return model, nn.functional.cross_entropy, x, y


def regressor():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 1)).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    return model, nn.functional.mse_loss, x, x[:, :1] ** 2 - x[:, 1:2]


def exact_hessian(model, loss_fn, x, y):
    names, params = zip(*model.named_parameters())
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]

    def loss_of(flat):
        chunks = {n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)}
        return loss_fn(torch.func.functional_call(model, chunks, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, torch.cat([p.detach().reshape(-1) for p in params]))


@pytest.mark.parametrize("problem", [classifier, regressor])
def test_top_eigenvalue_and_trace_match_the_exact_hessian(problem):
    model, loss_fn, x, y = problem()
    H = exact_hessian(model, loss_fn, x, y)
    eig = torch.linalg.eigvalsh(H)
    largest = float(eig[eig.abs().argmax()])
    assert top_eigenvalue(model, loss_fn(model(x), y), iterations=1000, tol=1e-12) == pytest.approx(largest, rel=1e-4)
    n = 2000
    # Hutchinson with Rademacher probes: variance 2 (|H|_F^2 - sum H_ii^2) per probe
    std = math.sqrt(2 * float((H**2).sum() - (H.diag() ** 2).sum()) / n)
    assert abs(hessian_trace(model, loss_fn(model(x), y), samples=n) - float(H.trace())) < 4 * std


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    """z_i^2 = 1: with no off-diagonal terms every probe returns the trace."""
    w = nn.Linear(5, 1, bias=False).double()
    x = torch.eye(5, dtype=torch.float64) * torch.arange(1.0, 6.0, dtype=torch.float64)[:, None]
    loss = 0.5 * (w(x) ** 2).sum()  # H = x^T x = diag(1, 4, 9, 16, 25)
    assert hessian_trace(w, loss, samples=3) == pytest.approx(55.0)


def test_edge_of_stability_ratio():
    model, loss_fn, x, y = classifier()
    s = measure_sharpness(model, loss_fn, x, y, lr=0.5, iterations=300, samples=200)
    assert s.eos_ratio == s.lambda_max * 0.5 / 2 and s.lambda_max > 0
    assert "edge of stability" in s.summary()


def test_sharpness_cli_on_a_finished_run(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=2", "--set", "checkpoint.enabled=false"]) == 0
    capsys.readouterr()
    assert main(["sharpness", "--run-dir", str(run), "--iterations", "20", "--probes", "10", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "top Hessian eigenvalue" in out and "lambda_max * lr / 2" in out and (tmp_path / "s.json").exists()
