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
