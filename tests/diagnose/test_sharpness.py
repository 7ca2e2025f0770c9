import torch
from torch import nn

from steepest.diagnose.sharpness import hessian_trace, measure_sharpness, top_eigenvalue


def small_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    return model, x, y


def exact_hessian(model, x, y):
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        ws = [c.view(s) for c, s in zip(chunks, shapes)]
        h = torch.tanh(x @ ws[0].T + ws[1])
        return nn.functional.cross_entropy(h @ ws[2].T + ws[3], y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(loss_of, flat)


def test_top_eigenvalue_and_trace_match_the_exact_hessian():
    model, x, y = small_problem()
    H = exact_hessian(model, x, y)
    eig = torch.linalg.eigvalsh(H)
    largest = eig[eig.abs().argmax()]
    loss = nn.functional.cross_entropy(model(x), y)
    assert abs(top_eigenvalue(model, loss, iterations=500, tol=1e-10) - float(largest)) < 1e-4 * abs(float(largest))
    trace = hessian_trace(model, nn.functional.cross_entropy(model(x), y), samples=2000)
    assert abs(trace - float(H.trace())) < 0.1 * abs(float(H.trace()))


def test_edge_of_stability_ratio():
    model, x, y = small_problem()
    s = measure_sharpness(model, nn.functional.cross_entropy, x, y, lr=0.5, iterations=300, samples=200)
    assert s.eos_ratio == s.lambda_max * 0.5 / 2 and s.lambda_max > 0
