import pytest

from steepest.cli import main
from steepest.config import recipe_from_dict
from steepest.data import load_data


def test_install_from_folder_into_user_cache(tmp_path, monkeypatch, shared_data, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STEEPEST_DATA_DIR", raising=False)
    assert main(["data", "install", "fashion-mnist", "--from", str(shared_data)]) == 0
    assert "installed fashion-mnist" in capsys.readouterr().out
    target = tmp_path / "cache" / "steepest" / "fashion-mnist"
    assert len(list(target.glob("*-ubyte.gz"))) == 4
    bundle = load_data(recipe_from_dict({"data": {"name": "fashion-mnist", "subset": 100}}).data)
    assert bundle.info.class_names[0] == "T-shirt/top" and bundle.info.sizes["test"] == 10_000


def test_missing_data_set_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("STEEPEST_DATA_DIR", raising=False)
    import steepest.data.idx as idx

    monkeypatch.setattr(idx, "candidate_dirs", lambda name, data_dir=None: [tmp_path / name])
    code = main(["train", "--set", "data.name=mnist", "--run-dir", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "steepest data install mnist" in err and err.count("\n") == 1


def test_install_unknown_name(capsys):
    assert main(["data", "install", "cifar10"]) == 2
    assert "unknown data set 'cifar10'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "linnerud"])
def test_sklearn_bundles_load(name):
    bundle = load_data(recipe_from_dict({"data": {"name": name}}).data)
    assert sum(bundle.info.sizes.values()) > 0 and bundle.info.num_outputs >= 1


def write_idx_set(folder, seed: int, n: int = 30, corrupt: str | None = None):
    """Four small gzipped IDX files (n train and n test 28x28 images); `corrupt` names one to truncate."""
    import gzip
    import struct

    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        dims = (n, 28, 28) if "images" in stem else (n,)
        body = rng.integers(0, 256 if "images" in stem else 10, dims, dtype=np.uint8).tobytes()
        data = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body
        (folder / f"{stem}.gz").write_bytes(gzip.compress(data[:-3] if stem == corrupt else data, mtime=0))
    return folder


def cached_bytes(target):
    return {p.name: p.read_bytes() for p in sorted(target.iterdir())}


def test_failed_install_leaves_the_previous_install_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["data", "install", "mnist", "--from", str(write_idx_set(tmp_path / "good", seed=0))]) == 0
    target = tmp_path / "cache" / "steepest" / "mnist"
    before = cached_bytes(target)
    assert len(before) == 4
    capsys.readouterr()
    bad = write_idx_set(tmp_path / "bad", seed=1, corrupt="t10k-labels-idx1-ubyte")  # read last: three good files first
    assert main(["data", "install", "mnist", "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte.gz is truncated" in err and err.count("\n") == 1
    assert cached_bytes(target) == before
    assert [p.name for p in target.parent.iterdir()] == ["mnist"]  # no staging folder left behind


def test_install_replaces_the_whole_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plain = tmp_path / "plain"
    plain.mkdir()
    import gzip

    for path in write_idx_set(tmp_path / "first", seed=0).iterdir():  # an install of uncompressed files
        (plain / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
    assert main(["data", "install", "mnist", "--from", str(plain)]) == 0
    second = write_idx_set(tmp_path / "second", seed=1)
    assert main(["data", "install", "mnist", "--from", str(second)]) == 0
    target = tmp_path / "cache" / "steepest" / "mnist"
    assert cached_bytes(target) == cached_bytes(second)  # no plain file of the first set shadows the new .gz ones


def test_install_refuses_a_set_whose_files_disagree(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = write_idx_set(tmp_path / "mixed", seed=0)
    other = write_idx_set(tmp_path / "other", seed=1, n=20)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes((other / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert main(["data", "install", "mnist", "--from", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "test images have shape (30, 28, 28) but labels (20,)" in err
    assert not (tmp_path / "cache" / "steepest" / "mnist").exists()
