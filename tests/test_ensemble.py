"""Ensembles: K members, averaged predictions, the ambiguity decomposition (variance reduction)."""

import pytest
import torch

from steepest.config import load_recipe
from steepest.data import load_data
from steepest.ensemble import average, report, train_ensemble


def test_ensemble_at_least_as_good_as_its_mean_member():
    recipe = load_recipe("digits_mlp", ["trainer.max_epochs=6", "data.subset=500", "trainer.early_stopping=null"])
    data = load_data(recipe.data)
    models, rep = train_ensemble(recipe, members=3, data=data)
    assert len(models) == 3 and len({round(s, 6) for s in rep.member_scores}) > 1
    # "at least as good" is a theorem for the squared error (the Brier score), not for accuracy. Over 30
    # member-seed triples (0-89; 270 test digits) the ensemble minus the mean member was -1.7 to +6.0
    # digits (mean +2.0; below it for 5 of 30), and minus the worst member +1 to +10 (+1 for 2 of 30: a
    # bound at the worst member held by one digit's rounding), so accuracy is held to the mean member
    # less 0.02 (5.4 digits)
    assert rep.ensemble_loss < rep.mean_member_loss
    assert rep.ensemble_score > rep.mean_member - 0.02, rep.summary()
    # the loss removed by averaging is exactly the members' prediction variance
    assert rep.ensemble_loss == pytest.approx(rep.mean_member_loss - rep.prediction_variance, rel=1e-4)
    assert 0 < rep.variance_reduction < 1
    probs = average(models, data.test.x, "classification")
    assert float((probs.argmax(-1) == data.test.y).float().mean()) == pytest.approx(rep.ensemble_score)
    assert "ensemble" in rep.summary()


def test_folds_give_each_member_different_data():
    recipe = load_recipe("diabetes_regression", ["trainer.max_epochs=5", "trainer.early_stopping=null"])
    models, rep = train_ensemble(recipe, members=3, folds=True)
    assert rep.metric == "r2" and len(models) == 3
    assert rep.ensemble_loss <= rep.mean_member_loss


def test_ambiguity_decomposition_is_exact():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 1, generator=g)
    preds = y + 0.5 * torch.randn(4, 50, 1, generator=g)
    rep = report(preds, y, "regression")
    assert rep.ensemble_loss == pytest.approx(rep.mean_member_loss - rep.prediction_variance, rel=1e-5)
    assert rep.ensemble_score > rep.mean_member
