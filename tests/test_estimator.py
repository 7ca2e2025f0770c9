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
    clf = SteepestClassifier(max_epochs=15, lr=3e-3)
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


def test_regression_beats_constant_and_linear_on_diabetes():
    X, y = skd.load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0)
    linear = r2_score(yte, LinearRegression().fit(Xtr, ytr).predict(Xte))
    constant = r2_score(yte, np.full_like(yte, ytr.mean()))
    scores = [SteepestRegressor(seed=s).fit(Xtr, ytr).score(Xte, yte) for s in range(3)]
    assert min(scores) > constant + 0.3
    assert np.mean(scores) > linear, (scores, linear)


CHECKS = ["check_estimators_fit_returns_self", "check_get_params_invariance", "check_set_params", "check_fit2d_predict1d",
          "check_n_features_in", "check_estimators_dtypes", "check_fit_score_takes_y", "check_dict_unchanged",
          "check_dont_overwrite_parameters", "check_estimators_unfitted", "check_fit2d_1sample", "check_fit1d", "check_estimators_nan_inf"]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("cls", [SteepestClassifier, SteepestRegressor])
def test_sklearn_estimator_checks(cls, check):
    """The scikit-learn `check_estimator` checks that apply to a network trained from a recipe."""
    import warnings

    from sklearn.utils import estimator_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(estimator_checks, check)(cls.__name__, cls(max_epochs=2))
