"""scikit-learn estimators over a recipe: steepest models inside Pipelines and grid searches.

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import train_test_split
    >>> X_train, X_test, y_train, y_test = train_test_split(*load_iris(return_X_y=True), random_state=0)
    >>> clf = SteepestClassifier(max_epochs=60, lr=1e-2).fit(X_train, y_train)
    >>> clf.score(X_test, y_test) > 0.85
    True

The recipe's data section is replaced by the arrays given to `fit`; a validation share of them
(`validation_fraction`) drives evaluation and early stopping. Every constructor argument is a
hyperparameter that `get_params`/`set_params` (and so GridSearchCV) can see.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from steepest.config import load_recipe, recipe_to_dict
from steepest.config.load import recipe_from_dict
from steepest.data.bundle import prepare
from steepest.data.raw import RawData
from steepest.errors import DataError
from steepest.predict import Predictor
from steepest.run import build_run


class _SteepestEstimator(BaseEstimator):
    _task = "classification"

    def __init__(self, recipe: str = "digits_mlp", max_epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, hidden: tuple[int, ...] | None = None, weight_decay: float | None = None,
                 validation_fraction: float = 0.15, seed: int = 0, overrides: tuple[str, ...] = ()):
        self.recipe = recipe
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.hidden = hidden
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.overrides = overrides

    def _recipe(self):
        sets = list(self.overrides)
        for key, value in (("trainer.max_epochs", self.max_epochs), ("optimizer.lr", self.lr), ("data.batch_size", self.batch_size),
                           ("model.hidden", list(self.hidden) if self.hidden is not None else None),
                           ("optimizer.weight_decay", self.weight_decay), ("trainer.seed", self.seed)):
            if value is not None:
                sets.append(f"{key}={value}")
        data = recipe_to_dict(load_recipe(self.recipe, sets))
        data["data"] = {"name": None, "format": None, "component": None, "task": self._task,
                        "split": [1 - self.validation_fraction, self.validation_fraction, 0.0],
                        "batch_size": data["data"]["batch_size"], "split_seed": self.seed}
        data["checkpoint"]["enabled"] = False
        if data["loss"].get("name") not in (None, "cross_entropy", "mse"):
            data["loss"] = {"name": None}
        return recipe_from_dict(data)

    def fit(self, X, y):

        X, y = check_X_y(X, y, dtype=np.float32, y_numeric=self._task == "regression")  # rejects NaN/inf and 1-D X
        recipe = self._recipe()
        if self._task == "classification":
            check_classification_targets(y)  # a continuous y is an error, not 1,000 classes
            self.classes_, y = np.unique(y, return_inverse=True)
        raw = RawData(x=X, y=y, task=self._task, num_classes=len(self.classes_) if self._task == "classification" else None)
        try:
            data = prepare(raw, recipe.data, "arrays")
        except DataError as exc:  # scikit-learn's contract: bad input to fit is a ValueError
            raise ValueError(str(exc)) from exc
        run = build_run(recipe, None, data=data, console=False)
        run.trainer.fit()
        self.predictor_ = Predictor(run.trainer.unwrapped_model.cpu(), data.info)
        self.n_features_in_ = X.shape[1]
        self.history_ = dict(run.trainer.state.metrics)
        return self

    def _outputs(self, X):
        check_is_fitted(self, "predictor_")
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features as input")
        return X


class SteepestClassifier(ClassifierMixin, _SteepestEstimator):
    _task = "classification"

    def predict(self, X):
        X = self._outputs(X)
        return self.classes_[self.predictor_.predict(X)]

    def predict_proba(self, X):
        X = self._outputs(X)
        return self.predictor_.predict_proba(X)


class SteepestRegressor(RegressorMixin, _SteepestEstimator):
    _task = "regression"

    def __init__(self, recipe: str = "diabetes_regression", max_epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, hidden: tuple[int, ...] | None = None, weight_decay: float | None = None,
                 validation_fraction: float = 0.15, seed: int = 0, overrides: tuple[str, ...] = ()):
        super().__init__(recipe, max_epochs, lr, batch_size, hidden, weight_decay, validation_fraction, seed, overrides)

    def predict(self, X):
        X = self._outputs(X)
        out = self.predictor_.predict(X)
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out
