"""Sequences: windows from a series, the sine data set with a chronological split, the LSTM's
forget-gate bias rule, and an LSTM forecaster against the last-value baseline on a held-out stretch."""

import numpy as np
import pytest
import torch

from steepest.config import load_recipe, recipe_from_dict
from steepest.data import Standardizer, load_data
from steepest.data.series import windows
from steepest.models import MODELS
from steepest.run import build_run


def test_windows_predict_the_next_value():
    series = np.arange(10, dtype=np.float32)
    x, y = windows(series, 3)
    assert x.shape == (7, 3, 1) and np.array_equal(x[0, :, 0], [0, 1, 2]) and y[0] == 3 and y[-1] == 9
    with pytest.raises(ValueError, match="shorter"):
        windows(series, 10)


def test_sine_split_is_chronological():
    data = load_data(recipe_from_dict({"data": {"name": "sine", "split": [0.7, 0.15, 0.15], "split_order": "ordered"}}).data)
    assert data.info.task == "regression" and data.info.input_shape == (32, 1) and data.info.kind == "sequence"
    xs, ys = Standardizer.from_dict(data.info.x_norm), Standardizer.from_dict(data.info.y_norm)
    # the windows follow each other: the last training target is the first value of the first val window's end
    train_y, val_x = ys.inverse(data.train.y.numpy()).ravel(), xs.inverse(data.val.x.numpy())
    assert np.allclose(val_x[0, -1, 0], train_y[-1], atol=1e-4)


def test_series_file_reads_a_real_series(tmp_path):
    values = np.sin(np.arange(200) / 5.0)
    (tmp_path / "s.csv").write_text("t,value\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values)))
    data = load_data(recipe_from_dict({"data": {"name": "series_file", "split_order": "ordered",
                                                "options": {"path": str(tmp_path / "s.csv"), "column": "value", "window": 10}}}).data)
    assert data.info.input_shape == (10, 1) and sum(data.info.sizes.values()) == 190


def test_lstm_forget_gate_bias_rule_is_visible():
    """bias_ih + bias_hh of every layer: forget gate 1, input and output gates -1, cell candidate 0."""
    model = MODELS.build("lstm", (16, 1), 1, hidden=8, layers=2)
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        i, f, g, o = total.detach().split(8)  # PyTorch's gate order
        assert torch.all(f == 1.0) and torch.all(i == -1.0) and torch.all(o == -1.0) and torch.all(g == 0.0)
    gru = MODELS.build("gru", (16, 1), 1, hidden=8)
    assert gru(torch.zeros(2, 16, 1)).shape == (2, 1)


def test_lstm_forecaster_beats_last_value_on_held_out_stretch():
    recipe = load_recipe("sine_lstm", ["trainer.max_epochs=4"])
    data = load_data(recipe.data)
    run = build_run(recipe, None, data=data, console=False)
    run.trainer.fit()
    mse = run.trainer.evaluate("test")["test_mse"]  # original units
    xs, ys = Standardizer.from_dict(data.info.x_norm), Standardizer.from_dict(data.info.y_norm)
    last = xs.inverse(data.test.x.numpy())[:, -1, 0]
    truth = ys.inverse(data.test.y.numpy()).reshape(-1)
    baseline = float(np.mean((last - truth) ** 2))
    assert mse < 0.8 * baseline, (mse, baseline)
