"""RegressionMeter against scikit-learn: R^2 per output, averaged (multioutput="uniform_average"),
exact for targets far from zero, accumulated over batches of any size."""

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from steepest.training.metrics import RegressionMeter


def measured(pred, truth, batch):
    meter = RegressionMeter(torch.device("cpu"))
    for i in range(0, len(truth), batch):
        meter.update(torch.tensor(0.0), pred[i:i + batch], truth[i:i + batch])
    return meter.compute()


@pytest.mark.parametrize("batch", [1, 7, 32, 1000])
@pytest.mark.parametrize("outputs", [None, 1, 3])
def test_mse_mae_r2_equal_scikit_learn(batch, outputs):
    g = torch.Generator().manual_seed(batch)
    shape = (200,) if outputs is None else (200, outputs)
    offsets = torch.tensor([1e4, 0.0, -3.0][: outputs or 1], dtype=torch.float64)  # one output far from zero
    truth = torch.randn(shape, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1][: outputs or 1]).squeeze() + offsets.squeeze()
    pred = truth + 0.7 * torch.randn(shape, generator=g, dtype=torch.float64)
    got = measured(pred, truth, batch)
    t, p = truth.numpy(), pred.numpy()
    assert got["r2"] == pytest.approx(r2_score(t, p), rel=1e-9)
    assert got["mse"] == pytest.approx(mean_squared_error(t, p), rel=1e-9)
    assert got["mae"] == pytest.approx(mean_absolute_error(t, p), rel=1e-9)


def test_outputs_on_different_scales_are_averaged_not_pooled():
    g = torch.Generator().manual_seed(0)
    truth = torch.stack([torch.randn(100, generator=g) + 100, torch.randn(100, generator=g)], 1)
    pred = truth + 0.9 * torch.randn(100, 2, generator=g)
    got = measured(pred, truth, 32)["r2"]
    assert got == pytest.approx(r2_score(truth.numpy(), pred.numpy()), rel=1e-5) and got < 0.5  # pooled it read 0.9996


def test_a_constant_output_scores_as_scikit_learn_does():
    truth = torch.stack([torch.full((50,), 2.0), torch.arange(50.0)], 1)
    exact, off = truth.clone(), truth.clone()
    off[:, 0] += 0.1
    assert measured(exact, truth, 16)["r2"] == pytest.approx(r2_score(truth.numpy(), exact.numpy()))
    assert measured(off, truth, 16)["r2"] == pytest.approx(np.mean([0.0, 1.0]))
    assert r2_score(truth.numpy(), off.numpy()) == pytest.approx(0.5)
