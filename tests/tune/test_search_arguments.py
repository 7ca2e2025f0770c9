"""`search --trials` and `--storage` mistakes: a count of zero or less is refused (it ran the recipe's
own trials, or none and then blamed the space), and a storage file that is no database is one line."""

import pytest

from steepest.cli import main
from steepest.config import load_recipe
from steepest.errors import ConfigError

optuna = pytest.importorskip("optuna")

FAST = ["trainer.max_epochs=1", "data.subset=200", "search.sampler=random", "search.metric=val_loss", "search.pruner=none",
        "search.n_trials=3"]


@pytest.fixture
def trained(monkeypatch):
    """steepest.run.train replaced by a stand-in that records each trial and reports a val_loss."""
    import steepest.tune.search as search_module

    calls = []

    def train(recipe, run_dir, console=False, extra_callbacks=()):
        calls.append(run_dir)
        return {"val_loss": 1.0 / len(calls)}

    monkeypatch.setattr(search_module, "train", train)
    return calls


@pytest.mark.parametrize("n_trials", [0, -2, True, 2.0])
def test_run_search_refuses_a_count_below_one_before_any_trial(tmp_path, trained, n_trials):
    from steepest.tune.search import run_search

    with pytest.raises(ConfigError, match="--trials: give a whole number >= 1"):
        run_search(load_recipe("digits_search", FAST), tmp_path, n_trials=n_trials)
    assert trained == []


@pytest.mark.parametrize("n_trials, expected", [(None, 3), (1, 1), (2, 2)])
def test_run_search_runs_the_count_given_or_the_recipes(tmp_path, trained, n_trials, expected):
    from steepest.tune.search import run_search

    study = run_search(load_recipe("digits_search", FAST), tmp_path, n_trials=n_trials)
    assert len(trained) == expected and len(study.trials) == expected


def test_a_storage_file_that_is_no_database_is_one_line(tmp_path, trained, capsys):
    notdb = tmp_path / "notdb"
    text = "a text file, no database at all; " * 10
    notdb.write_text(text)
    args = ["search", "digits_search", "--storage", f"sqlite:///{notdb}", "--trials", "1", "--out", str(tmp_path / "out")]
    for s in FAST:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{notdb} is not an Optuna database" in err and "file is not a database" in err and err.count("\n") == 1
    assert notdb.read_text() == text and trained == []
