import numpy as np
import pytest
import torch

from steepest.config import load_recipe
from steepest.data import load_data
from steepest.ensemble import train_ensemble
from steepest.models import MODELS
from steepest.train.run import build_run


@pytest.mark.parametrize("name,shape,x_shape", [("resnet", (1, 28, 28), (2, 1, 28, 28)), ("vgg", (1, 28, 28), (2, 1, 28, 28)),
                                                ("lstm", (16, 3), (2, 16, 3)), ("gru", (16, 3), (2, 16, 3)),
                                                ("transformer_encoder", (16, 3), (2, 16, 3))])
def test_models_produce_outputs_and_train(name, shape, x_shape):
    model = MODELS.build(name, shape, 5)
    out = model(torch.randn(*x_shape))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_causal_lm_is_causal_and_tied():
    torch.manual_seed(0)
    lm = MODELS.build("causal_lm", vocab_size=30, d_model=32, dropout=0.0).eval()
    ids = torch.randint(0, 30, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1) % 30
    a, b = lm(ids), lm(changed)
    assert torch.allclose(a[0, :7], b[0, :7], atol=1e-5) and not torch.allclose(a[0, 7:], b[0, 7:])
    assert lm.head.weight is lm.embed.weight


def test_lstm_forget_gate_bias_rule_is_visible():
    model = MODELS.build("lstm", (16, 1), 1, hidden=8, layers=2)
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.all(total[8:16] == 1.0) and torch.all(total[0:8] == -1.0) and torch.all(total[24:32] == -1.0)


def test_lstm_forecaster_beats_last_value_on_held_out_stretch():
    recipe = load_recipe("sine_lstm", ["trainer.max_epochs=8"])
    run = build_run(recipe, None, console=False)
    run.trainer.fit()
    mse = run.trainer.evaluate("test")["test_mse"]
    data = load_data(recipe.data)
    from steepest.data import Standardizer

    xs, ys = Standardizer.from_dict(data.info.x_norm), Standardizer.from_dict(data.info.y_norm)
    last = xs.inverse(data.test.x.numpy())[:, -1, 0]
    truth = ys.inverse(data.test.y.numpy()).reshape(-1)
    baseline = float(np.mean((last - truth) ** 2))
    assert mse < 0.8 * baseline, (mse, baseline)


def test_ensemble_at_least_as_good_as_its_mean_member():
    recipe = load_recipe("digits_mlp", ["trainer.max_epochs=6", "data.subset=500", "trainer.early_stopping=null"])
    models, report = train_ensemble(recipe, members=3)
    assert len(models) == 3 and len(set(round(s, 6) for s in report.member_scores)) > 1
    assert report.ensemble_score >= report.mean_member
    assert report.prediction_variance > 0
