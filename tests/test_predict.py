import numpy as np
import pytest
import sklearn.datasets as skd

from steepest.cli import main
from steepest.errors import CheckpointError, DataError
from steepest.predict import Predictor


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pred") / "run"
    assert main(["train", "--run-dir", str(run), "-q", "--set", "trainer.max_epochs=15"]) == 0
    return run


def test_predictor_applies_training_normalization(digits_run):
    predictor = Predictor.load(digits_run)
    bunch = skd.load_digits()
    accuracy = (predictor.predict(bunch.data) == bunch.target).mean()
    assert accuracy > 0.95  # raw pixels in: the run's own normalization must be applied
    proba = predictor.predict_proba(bunch.data[:5])
    assert np.allclose(proba.sum(1), 1, atol=1e-5)


def test_predict_cli_csv(digits_run, tmp_path, capsys):
    bunch = skd.load_digits()
    path = tmp_path / "in.csv"
    path.write_text(",".join(bunch.feature_names) + "\n" + "\n".join(",".join(str(v) for v in row) for row in bunch.data[:20]) + "\n")
    assert main(["predict", str(digits_run), str(path)]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 20 and sum(int(a) == b for a, b in zip(lines, bunch.target[:20])) >= 18


def test_predict_errors(digits_run, tmp_path):
    with pytest.raises(CheckpointError, match="no config.yaml"):
        Predictor.load(tmp_path)
    with pytest.raises(DataError, match="shape"):
        Predictor.load(digits_run).predict(np.zeros((2, 5)))
    with pytest.raises(DataError, match=r"one sample of shape \(64,\); give a batch of shape \(N, 64\), e.g. x\[None\]"):
        Predictor.load(digits_run).predict(np.zeros(64))
    bad = np.zeros((2, 64))
    bad[1, 3] = np.nan
    with pytest.raises(DataError, match="row 1 contains NaN"):
        Predictor.load(digits_run).predict(bad)


def test_regression_predictions_in_original_units(tmp_path):
    run = tmp_path / "reg"
    assert main(["train", "diabetes_regression", "--run-dir", str(run), "-q", "--set", "trainer.max_epochs=30"]) == 0
    bunch = skd.load_diabetes()
    preds = Predictor.load(run).predict(bunch.data).reshape(-1)
    assert abs(preds.mean() - bunch.target.mean()) < 0.2 * bunch.target.std()
    assert np.corrcoef(preds, bunch.target)[0, 1] > 0.6
