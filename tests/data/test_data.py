import gzip

import numpy as np
import pytest
import torch

from steepest.config import recipe_from_dict
from steepest.data import DeviceLoader, Standardizer, default_fractions, load_data, split_indices
from steepest.data.idx import read_idx
from steepest.errors import DataError


def data_cfg(**kw):
    return recipe_from_dict({"data": kw}).data


def test_default_fractions_follow_the_references():
    assert default_fractions(10_000) == pytest.approx((0.80, 0.15, 0.05))
    assert default_fractions(1_000_000) == pytest.approx((0.95, 0.04, 0.01))
    assert default_fractions(100_000_000) == pytest.approx((0.99, 0.009, 0.001))
    for n in (100, 5_000, 50_000, 3_000_000):
        assert sum(default_fractions(n)) == pytest.approx(1.0)


def test_split_is_deterministic_stratified_and_disjoint():
    y = np.repeat(np.arange(3), [500, 300, 200])
    a = split_indices(len(y), (0.7, 0.15, 0.15), y, seed=3)
    b = split_indices(len(y), (0.7, 0.15, 0.15), y, seed=3)
    for x1, x2 in zip(a, b):
        assert np.array_equal(x1, x2)
    train, val, test = a
    assert len(set(train) | set(val) | set(test)) == len(y) == len(train) + len(val) + len(test)
    for part in (val, test):
        counts = np.bincount(y[part], minlength=3) / len(part)
        assert counts == pytest.approx([0.5, 0.3, 0.2], abs=0.01)
    c = split_indices(len(y), (0.7, 0.15, 0.15), y, seed=4)
    assert not np.array_equal(a[2], c[2])


def test_normalization_is_fitted_on_train_only():
    bundle = load_data(data_cfg(name="wine"))
    assert bundle.train.x.mean(0).abs().max() < 1e-5
    assert (bundle.train.x.std(0, unbiased=False) - 1).abs().max() < 1e-4
    # val/test are transformed with the training statistics, so their mean is not exactly 0
    assert bundle.val.x.mean(0).abs().max() > 1e-3
    stats = Standardizer.from_dict(bundle.info.x_norm)
    import sklearn.datasets as skd

    raw = skd.load_wine().data.astype(np.float32)
    assert np.allclose(stats.inverse(bundle.test.x.numpy()).mean(), raw.mean(), rtol=0.2)


def test_device_loader_order_reproducible_from_epoch_alone():
    x, y = torch.arange(100.0)[:, None], torch.arange(100)
    loader = DeviceLoader(x, y, 16, seed=7)
    full = [b[1] for b in loader.batches(2)]
    tail = [b[1] for b in loader.batches(2, start=3)]
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail))
    assert torch.equal(torch.sort(torch.cat(full)).values, y)
    assert not torch.equal(torch.cat(full), torch.cat([b[1] for b in loader.batches(3)]))
    steps = list(loader.steps(0, accumulate=3))
    assert [len(s) for s in steps] == [3, 3, 1] and len(loader) == 7


def test_ddp_shards_cover_the_epoch():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    shards = [torch.cat([b[1] for b in DeviceLoader(x, y, 2, seed=1, rank=r, world_size=3).batches(0)]) for r in range(3)]
    assert set(torch.cat(shards).tolist()) == set(range(10))
    assert len({len(s) for s in shards}) == 1


def write_csv(path, rows, header="a,b,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_labels_nan_ragged_rejected_with_row(tmp_path):
    ragged = write_csv(tmp_path / "r.csv", ["1,2,0", "3,4,1", "5,1"])
    with pytest.raises(DataError, match="row 2 .*3 fields|row 2 .* 2 fields"):
        load_data(data_cfg(format="csv", path=str(ragged), target="label"))
    nan = write_csv(tmp_path / "n.csv", ["1,2,0", "nan,4,1", "5,1,0"])
    with pytest.raises(DataError, match=r"row 1 \(line 3\) contains NaN"):
        load_data(data_cfg(format="csv", path=str(nan), target="label"))
    inf = write_csv(tmp_path / "i.csv", ["1,2,0", "3,4,1", "5,inf,0"])
    with pytest.raises(DataError, match=r"row 2 \(line 4\) contains inf"):
        load_data(data_cfg(format="csv", path=str(inf), target="label"))
    labels = write_csv(tmp_path / "l.csv", ["1,2,0", "3,4,1", "5,1,3", "5,1,1"])
    with pytest.raises(DataError, match=r"row 2 has label 3, outside \[0, 2\)"):
        load_data(data_cfg(format="csv", path=str(labels), target="label", num_classes=2))
    negative = write_csv(tmp_path / "neg.csv", ["1,2,0", "3,4,-1", "5,1,1"])
    with pytest.raises(DataError, match="row 1 has label -1"):
        load_data(data_cfg(format="csv", path=str(negative), target="label", task="classification"))
    with pytest.raises(DataError, match="did you mean 'label'"):
        load_data(data_cfg(format="csv", path=str(labels), target="labl"))


def test_npz_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(60, 3)), y=rng.integers(0, 3, 60))
    bundle = load_data(data_cfg(format="npz", path=str(tmp_path / "d.npz")))
    assert bundle.info.task == "classification" and bundle.info.num_outputs == 3
    rows = [f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    bundle = load_data(data_cfg(format="csv", path=str(write_csv(tmp_path / "s.csv", rows)), target="label"))
    assert bundle.info.class_names == ["cat", "dog"] and bundle.info.input_shape == (2,)


def test_regression_targets_normalized_on_train():
    bundle = load_data(data_cfg(name="diabetes"))
    assert bundle.info.task == "regression" and bundle.info.num_outputs == 1
    assert abs(float(bundle.train.y.mean())) < 1e-5 and bundle.info.y_norm is not None


def test_idx_reader_plain_and_gzip_and_truncation(tmp_path, shared_data):
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and labels.max() == 9
    raw = gzip.decompress((shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "plain").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "plain"), labels)
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")


def test_mnist_uses_official_test_split(shared_data):
    bundle = load_data(data_cfg(name="mnist", subset=2000))
    assert bundle.info.sizes["test"] == 10_000 and bundle.info.sizes["train"] == 2000
    assert bundle.info.input_shape == (1, 28, 28)
    mean = Standardizer.from_dict(bundle.info.x_norm).mean[0]
    assert mean == pytest.approx(0.1307, abs=0.01)  # canonical MNIST mean, from a random 2k subset


def test_digits_read_from_the_file_equal_scikit_learns_loader():
    import sklearn.datasets

    from steepest.data.sources import _digits_file, sklearn_set

    assert _digits_file() is not None  # the fast path is the one taken here
    ours = sklearn_set("load_digits", "classification")
    bunch = sklearn.datasets.load_digits()
    assert np.array_equal(ours.x, bunch.data.astype(np.float32))
    assert np.array_equal(ours.y, bunch.target.astype(np.int64))
    assert ours.class_names == [str(n) for n in bunch.target_names]
    assert ours.feature_names == list(bunch.feature_names)
