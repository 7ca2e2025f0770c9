"""`steepest baseline`: scikit-learn baselines on the recipe's own split, beside the run; the doctor
says when the network does not beat them."""

import json

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import load_data
from steepest.diagnose.baselines import BaselineScores, compare_with_run, fit_baselines


def test_regression_baselines_score_in_original_units():
    data = load_data(load_recipe("diabetes_regression").data)
    results = {r.name: r.scores for r in fit_baselines(data)}
    assert abs(results["constant (training mean)"]["test_r2"]) < 0.1  # the mean explains nothing
    assert results["ridge regression"]["test_r2"] > 0.3  # diabetes: a linear model explains about half the variance
    assert results["ridge regression"]["test_mse"] > 1000  # original units (disease progression, variance ~6000), not standardized


def test_verdicts_against_the_baselines():
    results = [BaselineScores("constant", {"test_accuracy": 0.2}), BaselineScores("logistic regression", {"test_accuracy": 0.9}),
               BaselineScores("gradient boosting", {"test_accuracy": 0.85})]
    assert compare_with_run(results, "classification", {"test_accuracy": 0.95}).verdict == "ok"
    below = compare_with_run(results, "classification", {"test_accuracy": 0.88})
    assert below.verdict == "warn" and "logistic regression" in below.summary
    assert compare_with_run(results, "classification", {"test_accuracy": 0.2}).verdict == "fail"


def test_baseline_command_beside_a_run_and_in_the_doctor(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "digits_mlp", "-q", "--run-dir", str(run), "--set", "trainer.max_epochs=2", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["baseline", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "logistic regression" in out and "gradient boosting" in out and "this network (the run)" in out
    rows = {r["name"]: r for r in json.loads((run / "baselines.json").read_text())}
    assert rows["logistic regression"]["test_accuracy"] > 0.9  # digits: a linear model is strong
    assert rows["constant (most frequent class)"]["test_accuracy"] < 0.2
    main(["doctor", "--run-dir", str(run)])
    doctor = json.loads((run / "doctor.json").read_text())
    assert any(r["name"] == "baselines" and r["verdict"] in ("ok", "warn") for r in doctor)
