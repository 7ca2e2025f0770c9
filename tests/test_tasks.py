"""Tasks beyond multiclass classification, end to end through `steepest.run.train`: binary
(BCE, class weights, F1 and PR-AUC), multi-label, regression (inferred or declared, MSE/Huber, metrics in
original units, output bias = target mean), and full-batch / mini-batch / batch-1 SGD as one setting."""

import math

import numpy as np
import pytest
import sklearn.datasets as skd
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import average_precision_score, r2_score

from steepest.config import load_recipe, recipe_from_dict
from steepest.data import Standardizer, load_data
from steepest.ensemble import train_ensemble
from steepest.run import build_run, train


def _recipe(data: dict, **sections):
    base = {"data": data, "model": {"name": "mlp", "hidden": [32]}, "optimizer": {"name": "adamw", "lr": 3e-3},
            "trainer": {"max_epochs": 12}, "checkpoint": {"enabled": False}}
    return recipe_from_dict({**base, **sections})


def test_binary_with_bce_class_weights_and_pr_auc(tmp_path):
    recipe = _recipe({"name": "breast_cancer", "task": "binary", "balance": "class_weights"})
    summary = train(recipe, tmp_path, console=False)
    assert summary["task"] == "binary"
    assert summary["test_accuracy"] > 0.92 and summary["test_macro_f1"] > 0.9 and summary["test_pr_auc"] > 0.95, summary
    # the reported PR-AUC is scikit-learn's average precision of the model's test scores
    run = build_run(recipe, None, console=False)
    run.trainer.fit()
    metrics = run.trainer.evaluate("test")
    with torch.no_grad():
        scores = run.trainer.unwrapped_model.eval()(run.data.test.x).reshape(-1)
    assert run.trainer.unwrapped_model[-1].out_features == 1  # one logit
    assert metrics["test_pr_auc"] == pytest.approx(average_precision_score(run.data.test.y.reshape(-1).numpy(), scores.numpy()))


def test_multilabel_end_to_end(tmp_path):
    x, y = skd.load_digits(return_X_y=True)
    labels = np.stack([y % 2 == 0, y >= 5, np.isin(y, [2, 3, 5, 7])], 1).astype(np.float32)  # even, large, prime
    np.savez(tmp_path / "digits_multilabel.npz", x=x.astype(np.float32), y=labels)
    summary = train(_recipe({"format": "npz", "path": str(tmp_path / "digits_multilabel.npz")}, trainer={"max_epochs": 8}),
                    tmp_path / "run", console=False)
    assert summary["task"] == "multilabel"  # inferred from 0/1 indicator columns
    assert summary["test_micro_f1"] > 0.9 and summary["test_accuracy"] > 0.9, summary


def test_regression_inferred_with_huber_metrics_in_original_units_and_bias_rule(tmp_path):
    x, y = skd.load_diabetes(return_X_y=True)
    path = tmp_path / "diabetes.csv"
    np.savetxt(path, np.column_stack([x, y + 0.5]), delimiter=",", header=",".join([f"f{i}" for i in range(10)] + ["y"]), comments="")
    recipe = _recipe({"format": "csv", "path": str(path), "target": "y"}, loss={"name": "huber"},
                     model={"name": "mlp", "hidden": [16], "output_bias": "auto"}, trainer={"max_epochs": 20})
    run = build_run(recipe, None, console=False)
    assert run.data.info.task == "regression"  # non-integer targets
    # "final bias = target mean": targets are standardized on the training split, so the rule sets the
    # bias to 0, which the inverse transform maps back to the training mean in original units
    y_norm = Standardizer.from_dict(run.data.info.y_norm)
    bias = run.trainer.unwrapped_model[-1].bias.detach()
    assert float(bias.abs().max()) < 1e-6
    assert y_norm.inverse(bias.numpy().reshape(1, 1))[0, 0] == pytest.approx(float(y_norm.inverse(run.data.train.y.numpy()).mean()), rel=1e-5)
    run.trainer.fit()
    metrics = run.trainer.evaluate("test")
    with torch.no_grad():
        pred = y_norm.inverse(run.trainer.unwrapped_model.eval()(run.data.test.x).numpy())
    truth = y_norm.inverse(run.data.test.y.numpy())
    assert metrics["test_mse"] == pytest.approx(float(np.mean((pred - truth) ** 2)), rel=1e-4)
    assert metrics["test_mae"] == pytest.approx(float(np.mean(np.abs(pred - truth))), rel=1e-4)
    assert metrics["test_r2"] == pytest.approx(r2_score(truth, pred), abs=1e-4) and metrics["test_r2"] > 0.35


def test_diabetes_recipe_beats_constant_and_matches_linear_on_the_same_split():
    """The bundled recipe as a 3-seed ensemble against scikit-learn's LinearRegression fitted on the very
    same training split, R² on the test split (66 samples), for three split seeds. Diabetes is nearly
    linear: over five sets of member seeds (0-14), ensemble minus linear was -0.015 to +0.040 per split
    and -0.004 to +0.015 averaged over the three splits, so "beats linear" (within 0.01 per split, above on
    average) held for some seeds and not others, and would hold or not by chance on another CPU. The test
    asserts what holds with room: far above the constant predictor (every member by > 0.35 + 0.12), and as
    good as linear within 0.05 on each split and 0.03 on average."""
    ours, linear = [], []
    for split_seed in range(3):
        recipe = load_recipe("diabetes_regression", [f"data.split_seed={split_seed}"])
        data = load_data(recipe.data)
        y_norm = Standardizer.from_dict(data.info.y_norm)
        y_train, y_test = (y_norm.inverse(s.y.numpy()).ravel() for s in (data.train, data.test))
        linear.append(r2_score(y_test, LinearRegression().fit(data.train.x.numpy(), y_train).predict(data.test.x.numpy())))
        constant = r2_score(y_test, np.full_like(y_test, y_train.mean()))
        _, report = train_ensemble(recipe, members=3, data=data)
        ours.append(report.ensemble_score)
        assert min(report.member_scores) > constant + 0.35
        assert ours[-1] > linear[-1] - 0.05, (split_seed, report.summary(), linear[-1])
    assert np.mean(ours) > np.mean(linear) - 0.03, (ours, linear)


def test_gd_variants_are_one_batch_size_setting():
    """Full-batch GD, mini-batch SGD and batch-1 SGD (recipe gd_variants, one epoch each here): same
    data and budget in epochs; the smaller the batch, the more updates and the lower the loss after one epoch.
    The lr is annealed to 0 over the epoch (cosine): at the recipe's constant lr the last few batch-1 steps
    alone decide where it ends, and it ended above batch 32 for 2 of 5 seeds."""
    val_loss = {}
    for batch_size in ("full", 32, 1):
        sets = [f"data.batch_size={batch_size}", "trainer.max_epochs=1", "schedule={name: cosine}"]
        run = build_run(load_recipe("gd_variants", sets), None, console=False)
        n = len(run.data.train)
        run.trainer.fit()
        assert run.trainer.state.step == {"full": 1, 32: math.ceil(n / 32), 1: n}[batch_size]
        val_loss[batch_size] = run.trainer.evaluate("val")["val_loss"]
    assert val_loss[1] < val_loss[32] < val_loss["full"], val_loss
