"""The scikit-learn estimators: fit/predict/score, clone, Pipeline + GridSearchCV; and the regression
recipe against a constant predictor and a linear model on the same split."""

import numpy as np
import pytest
import sklearn.datasets as skd
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from steepest.estimator import SteepestClassifier, SteepestRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = skd.load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_classifier_fit_predict_score_and_params(digits):
    Xtr, Xte, ytr, yte = digits
    clf = SteepestClassifier(max_epochs=8, lr=3e-3)
    assert clf.fit(Xtr, ytr) is clf
    assert clf.score(Xte, yte) > 0.93
    proba = clf.predict_proba(Xte[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(Xte)) <= set(ytr)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.set_params(lr=1e-2).lr == 1e-2
    with pytest.raises(ValueError, match="features"):
        clf.predict(Xte[:, :10])


def test_string_labels_round_trip():
    X, y = skd.load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SteepestClassifier(max_epochs=60, lr=1e-2, batch_size=16).fit(X, names)
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.9


def test_pipeline_and_grid_search(digits):
    Xtr, Xte, ytr, yte = digits
    pipe = Pipeline([("scale", StandardScaler()), ("net", SteepestClassifier(max_epochs=6))])
    search = GridSearchCV(pipe, {"net__lr": [1e-4, 3e-3]}, cv=2)
    search.fit(Xtr[:600], ytr[:600])
    assert search.best_params_["net__lr"] == 3e-3
    assert search.score(Xte, yte) > 0.85


def test_regressor_on_diabetes_matches_a_linear_model():
    """(The recipe-level comparison with a linear model is tests/test_tasks.py.) R² on 89 test samples,
    where the linear fit scores 0.33 above the constant. At the recipe's lr 3e-3 the early-stopped fit
    (on 53 validation samples) scored anywhere from 0.26 to 0.37 across seeds; at lr 1e-3 it
    stops at a steadier point."""
    X, y = skd.load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0)
    linear = r2_score(yte, LinearRegression().fit(Xtr, ytr).predict(Xte))
    constant = r2_score(yte, np.full_like(yte, ytr.mean()))
    reg = SteepestRegressor(lr=1e-3).fit(Xtr, ytr)
    assert reg.predict(Xte).shape == yte.shape
    score = reg.score(Xte, yte)
    assert score > constant + 0.25 and score > linear - 0.05, (score, linear)


# check_estimator's checks that do not pass, and why; everything else must pass (skips: pandas or the
# array API are not installed)
EXPECTED_FAILURES = {
    SteepestRegressor: {"check_regressors_train": "needs R² > 0.5 on its training data: not after 2 epochs (30 epochs: below)"},
    SteepestClassifier: {},
}


@pytest.mark.parametrize("cls", [SteepestClassifier, SteepestRegressor])
def test_sklearn_check_estimator(cls):
    """scikit-learn's full `check_estimator` suite, with 2-epoch fits to keep it fast."""
    import inspect
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    if "on_fail" not in inspect.signature(check_estimator).parameters:
        pytest.skip("scikit-learn < 1.6 cannot return the check results")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(cls(max_epochs=2), on_fail=None, on_skip=None, expected_failed_checks=EXPECTED_FAILURES[cls])
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert len(results) > 40 and not failed, failed


def test_regressor_passes_the_training_check_given_epochs():
    import warnings

    from sklearn.utils.estimator_checks import check_regressors_train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_regressors_train("SteepestRegressor", SteepestRegressor(max_epochs=30))
