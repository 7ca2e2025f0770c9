import sqlite3

import pytest

from steepest.cli import main
from steepest.config import load_recipe

optuna = pytest.importorskip("optuna")

FAST = ["--set", "trainer.max_epochs=3", "--set", "data.subset=400", "--set", "search.sampler=random"]


def test_search_runs_trials_stores_them_and_resumes(tmp_path, capsys):
    assert main(["search", "digits_search", *FAST, "--trials", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best val_accuracy" in out and (tmp_path / "best_recipe.yaml").exists()
    best = load_recipe(str(tmp_path / "best_recipe.yaml"))
    assert 1e-4 <= best.optimizer.lr <= 3e-2 and best.search is None
    with sqlite3.connect(tmp_path / "study.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3
    # Same storage: the study continues where it stopped.
    assert main(["search", "digits_search", *FAST, "--trials", "2", "--out", str(tmp_path)]) == 0
    study = optuna.load_study(study_name="digits_search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 5
    values = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(values)) == 5


def test_search_space_errors_are_one_line(tmp_path, capsys):
    code = main(["search", "digits_search", "--set", "search.space={model.dropoutt: {low: 0, high: 0.5}}", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'dropout'" in err and err.count("\n") == 1
    code = main(["search", "digits_search", "--set", "search.space={optimizer.lr: {low: 0.1, high: 0.01}}", "--out", str(tmp_path)])
    assert code == 2 and "low < high" in capsys.readouterr().err
