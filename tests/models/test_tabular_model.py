"""fastai's tabular model (steepest.models.tabular): entity embeddings of the index-encoded CSV
columns, trained through the CLI and predicted from raw rows.

The synthetic set (`make_rows`): 3,000 rows; `store` one of 200 categories, each with its own
effect e_s ~ N(0, 1.5²); numbers a, b, c ~ N(0, 1), c empty in 5% of the rows; label = yes where
e_store + 0.5 a - 0.5 b > 0 (c is noise). The majority class is 50-52% of the rows; the splits hold
2,176 / 450 / 374 rows. Measured through `steepest train` with the fixture's recipe (`SETS`: 5
epochs, adamw lr 0.01, batch 64, fill_missing), data seed = trainer seed = 0..4, test accuracy:

    model: tabular, categorical_encoding: index          0.963 0.952 0.963 0.957 0.981
    the same without the store column                    0.639 0.660 0.599 0.647 0.671
    mlp [200, 100] on the index column as a number       0.623 0.655 0.618 0.663 0.508
    mlp [200, 100] on one-hot columns (201 of them)      0.968 0.957 0.971 0.960 0.976

so the embeddings carry the store's effect (the numbers alone reach 0.60-0.67), as well as one-hot
columns do here. The bounds below: test accuracy >= 0.88, and >= the constant baseline + 0.30;
about 2 s of training on one thread (170 steps).
"""

import json
import math

import numpy as np
import pytest
import torch

from steepest.cli import main
from steepest.data.tabular import TabularEncoder
from steepest.errors import ConfigError
from steepest.models import build_model
from steepest.models.tabular import TabularModel, emb_sz_rule
from steepest.predict import Predictor

SETS = ["trainer.max_epochs=5", "optimizer.lr=0.01", "data.batch_size=64", "trainer.seed=0", "model={name: tabular}"]
OPTIONS = "{categorical: [store], categorical_encoding: index, fill_missing: true}"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def make_rows(n=3000, seed=0, k=200, held_out=0):
    """(rows of [store, a, b, c] cells, labels yes/no) for n + held_out rows; see the module docstring."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 1.5, k)
    store = rng.integers(0, k, n + held_out)
    x = rng.normal(size=(n + held_out, 3))
    missing = rng.random(n + held_out) < 0.05
    label = effect[store] + 0.5 * x[:, 0] - 0.5 * x[:, 1] > 0
    rows = [[f"s{s:03d}", f"{r[0]:.3f}", f"{r[1]:.3f}", "" if m else f"{r[2]:.3f}"] for s, r, m in zip(store, x, missing)]
    return rows, ["yes" if t else "no" for t in label]


def write_csv(path, rows, labels):
    path.write_text("store,a,b,c,label\n" + "".join(",".join([*r, t]) + "\n" for r, t in zip(rows, labels)))
    return path


def train_cli(run, path, *sets, options=OPTIONS):
    args = [x for s in (f"data={{format: csv, path: {path}, target: label, options: {options}}}", *sets) for x in ("--set", s)]
    return main(["train", "--run-dir", str(run), "-q", "--no-report", *args])


@pytest.fixture(scope="module")
def store_run(tmp_path_factory):
    """A `model: tabular` run on the 3,000 rows, and 300 more rows from the same stores held out of the CSV."""
    tmp = tmp_path_factory.mktemp("tabular_model")
    rows, labels = make_rows(held_out=300)
    path = write_csv(tmp / "stores.csv", rows[:3000], labels[:3000])
    assert train_cli(tmp / "run", path, *SETS) == 0
    return tmp / "run", labels[:3000], (rows[3000:], labels[3000:])


def test_embedding_sizes_follow_fastais_rule_and_the_override():
    # fastai's emb_sz_rule, min(600, round(1.6 * n ** 0.56)), worked by hand: 1.6 * 10 ** 0.56 = 5.81 -> 6, ...
    assert [emb_sz_rule(n) for n in (2, 3, 5, 10, 201, 1000, 10**5)] == [2, 3, 4, 6, 31, 77, 600]
    assert all(emb_sz_rule(n) == min(600, round(1.6 * n**0.56)) for n in range(1, 5000))
    rows = np.array([[f"s{i % 200}", f"g{i % 9}", "x" if i % 2 else "y", str(i), "" if i % 7 == 0 else "1.5"] for i in range(400)],
                    dtype=object)
    enc = TabularEncoder.fit(rows, ["store", "grade", "flag", "n", "m"], categorical=["store", "grade", "flag"],
                             encoding="index", fill_missing=True)
    assert enc.cardinalities == [201, 10, 3] and enc.feature_names == ["store", "grade", "flag", "n", "m", "m_missing"]
    width = enc.width  # 3 index columns, 3 continuous (n, m, m_missing)
    model = build_model("tabular", {"layers": [32, 16]}, (width,), 4, tabular=enc.to_dict())  # the recipe path, `tabular` injected
    assert isinstance(model, TabularModel)
    assert [tuple(e.weight.shape) for e in model.embeds] == [(201, 31), (10, 6), (3, 3)]
    override = build_model("tabular", {"layers": [32, 16], "embedding_sizes": {"grade": 2}}, (width,), 4, tabular=enc.to_dict())
    assert [e.embedding_dim for e in override.embeds] == [31, 2, 3]

    def count(dims, cont=3, hidden=(32, 16), out=4):
        emb = sum(n * d for n, d in zip((201, 10, 3), dims))
        widths = [sum(dims) + cont, *hidden]
        mlp = sum(i * h + 2 * h for i, h in zip(widths, hidden))  # Linear without bias (BatchNorm follows), BatchNorm gain + shift
        return emb + 2 * cont + mlp + (hidden[-1] + 1) * out  # + BatchNorm of the continuous columns + the output Linear

    assert sum(p.numel() for p in model.parameters()) == count([31, 6, 3])
    assert sum(p.numel() for p in override.parameters()) == count([31, 2, 3])
    x = torch.tensor(enc.transform(rows[:8]), dtype=torch.float32)
    assert model(x).shape == (8, 4) and model.eval()(x).shape == (8, 4)
    with pytest.raises(ConfigError, match="embedding_sizes: 'grad' not a categorical column; they are: store, grade, flag"):
        build_model("tabular", {"embedding_sizes": {"grad": 2}}, (width,), 4, tabular=enc.to_dict())


def test_learns_a_200_category_column_through_the_cli(store_run):
    run, labels, _ = store_run
    summary = json.loads((run / "summary.json").read_text())
    info = json.loads((run / "data_info.json").read_text())
    assert info["feature_names"] == ["store", "a", "b", "c", "c_missing"] and info["tabular"]["cardinalities"] == [201]
    majority = max(labels.count("yes"), labels.count("no")) / len(labels)  # the test split is stratified: the same share
    assert summary["test_accuracy"] >= 0.88, summary
    assert summary["test_accuracy"] >= majority + 0.30, (summary, majority)


def test_predicts_raw_rows_with_an_unseen_category_and_a_missing_number(store_run, tmp_path, capsys):
    run, _, (rows, labels) = store_run
    predictor = Predictor.load(run)
    assert isinstance(predictor.model, TabularModel) and predictor.model.embeds[0].num_embeddings == 201
    names = predictor.info.class_names
    held_out = [names[i] for i in predictor.predict(np.array(rows, dtype=object))]
    assert np.mean([p == t for p, t in zip(held_out, labels)]) >= 0.85  # the 300 rows never in the CSV, from raw cells
    new = [{"store": "s999", "a": "0.5", "b": "-0.5", "c": "0.1"}, {"store": "s001", "a": 1.0, "b": 0.0, "c": ""},
           {"store": None, "a": 0.0, "b": 0.0, "c": None}]
    x = predictor.encode(new)
    median = predictor.encoder.medians["c"]
    assert x[0, 0] == 0 and x[1, 0] == predictor.encoder.categories["store"].index("s001") + 1 and x[2, 0] == 0  # unseen, missing -> #na#
    assert x[1, 3:].tolist() == pytest.approx([median, 1.0]) and x[2, 3:].tolist() == pytest.approx([median, 1.0])
    assert np.isfinite(predictor.outputs(new)).all() and set(predictor.predict(new).tolist()) <= {0, 1}
    path = tmp_path / "new.csv"  # the CLI: columns in another order, an unseen store, an empty number
    path.write_text("c,store,b,a\n0.1,s999,-0.5,0.5\n,s001,0,1\n")
    assert main(["predict", str(run), str(path)]) == 0
    assert capsys.readouterr().out.split() == [names[i] for i in predictor.predict(new[:2])]
    with pytest.raises(IndexError, match=r"categorical column 'store' holds an index outside \[0, 200\]"):
        predictor.model(torch.tensor([[201.0, 0, 0, 0, 0]]))  # features not written by the encoder
    assert main(["export", str(run)]) == 2  # as every run with encoded CSV cells: `steepest predict` instead, in one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steepest predict" in err


def test_one_hot_columns_are_refused_and_numeric_data_is_all_continuous(tmp_path, capsys):
    rows, labels = make_rows(n=200, k=5)
    path = write_csv(tmp_path / "small.csv", rows, labels)
    code = train_cli(tmp_path / "onehot", path, "trainer.max_epochs=1", "model={name: tabular}",
                     options="{categorical: [store], fill_missing: true}")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "categorical columns (store) are one-hot encoded" in err and "data.options.categorical_encoding: index" in err
    # no categorical column (a numeric CSV, a scikit-learn set): every column continuous, no embeddings
    model = build_model("tabular", {}, (3,), 2)
    assert len(model.embeds) == 0 and model.bn_cont.num_features == 3 and model.layers[0].in_features == 3
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("a,b,c,label\n" + "".join(",".join([*r[1:3], "0", t]) + "\n" for r, t in zip(rows, labels)))
    assert train_cli(tmp_path / "numeric", numeric, "trainer.max_epochs=1", "model={name: tabular}", options="{}") == 0
    assert math.isfinite(json.loads((tmp_path / "numeric" / "summary.json").read_text())["test_accuracy"])
