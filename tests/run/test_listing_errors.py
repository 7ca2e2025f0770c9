"""`steepest runs` mistakes are one-line errors, not "no runs found" or an unsorted table with exit 0:
a missing --root, a --where or --sort key that no run has (the available ones listed), and a
malformed --where condition."""

import json

import pytest

from steepest.cli import main
from steepest.errors import ConfigError
from steepest.run.listing import list_runs, select


@pytest.fixture
def root(tmp_path):
    """Two finished runs as `steepest runs` reads them (config.yaml and summary.json), no training."""
    root = tmp_path / "runs"
    for name, steps, loss in (("a", 60, 0.5), ("b", 20, 0.7)):
        (root / name).mkdir(parents=True)
        (root / name / "config.yaml").write_text("name: digits_mlp\noptimizer:\n  name: adamw\n  lr: 0.003\n")
        (root / name / "summary.json").write_text(json.dumps({"steps": steps, "val_loss": loss, "val_accuracy": 1 - loss}))
    return root


def one_line_error(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_a_missing_root_or_a_file_as_root_is_an_error(tmp_path, capsys):
    assert "no such folder" in one_line_error(["runs", "--root", str(tmp_path / "nothere")], capsys)
    (tmp_path / "file").write_text("x")
    assert "not a folder" in one_line_error(["runs", "--root", str(tmp_path / "file")], capsys)
    (tmp_path / "empty").mkdir()
    assert main(["runs", "--root", str(tmp_path / "empty")]) == 0  # a folder without runs yet: no error
    assert "no runs found" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--where", "stepz > 2"], "no run has 'stepz'; did you mean 'steps'?"),
    (["--sort=-val_los"], "no run has 'val_los'; did you mean 'val_loss'?"),
    (["--sort", "nope"], "no run has 'nope'"),
    (["--where", "steps >> 3"], "'steps >> 3' is not KEY OP VALUE"),
    (["--where", "steps => 3"], "is not KEY OP VALUE"),
    (["--where", "steps <> 3"], "is not KEY OP VALUE"),
    (["--where", "steps >"], "is not KEY OP VALUE"),
    (["--where", "steps! = 3"], "is not KEY OP VALUE"),
    (["--sort=-"], "names no column"),
])
def test_unknown_keys_and_malformed_conditions_are_errors(root, capsys, args, message):
    err = one_line_error(["runs", "--root", str(root), *args], capsys)
    assert message in err
    if "no run has" in message:
        assert "available: run, date, recipe" in err and "val_accuracy" in err


def test_good_conditions_still_filter_and_sort(root, capsys):
    assert main(["runs", "--root", str(root), "--json", "--where", "steps >= 30", "--where", "optimizer = adamw"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["a"]
    assert main(["runs", "--root", str(root), "--json", "--sort=-val_loss"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["b", "a"]
    rows = list_runs(root)
    assert select(rows, [], None) == rows and select([], ["nokey > 1"], "nokey") == []  # no rows: nothing to check
    with pytest.raises(ConfigError):
        select(rows, ["val_loss > 0.6", "nokey > 1"], None)  # checked against every run, not only those kept
