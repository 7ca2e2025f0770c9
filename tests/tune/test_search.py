import sqlite3

import pytest

from steepest.cli import main
from steepest.config import load_recipe

optuna = pytest.importorskip("optuna")

FAST = ["--set", "trainer.max_epochs=3", "--set", "data.subset=400", "--set", "search.sampler=random"]


def test_search_runs_trials_stores_them_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STEEPEST_NO_REPORT", raising=False)  # the suite sets it (tests/conftest.py); this run draws the plots
    assert main(["search", "digits_search", *FAST, "--trials", "3", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "best val_accuracy" in out and (tmp_path / "digits_search" / "best_recipe.yaml").exists()
    lines = [line for line in captured.err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and all("optimizer.lr=" in line for line in lines)  # one line per finished trial
    assert (tmp_path / "digits_search" / "optimization_history.png").exists()  # Optuna's own plots
    best = load_recipe(str(tmp_path / "digits_search" / "best_recipe.yaml"))
    assert 1e-4 <= best.optimizer.lr <= 3e-2 and best.search is None
    with sqlite3.connect(tmp_path / "study.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3
    # Same storage: the study continues where it stopped (and with STEEPEST_NO_REPORT=1 draws no plots).
    monkeypatch.setenv("STEEPEST_NO_REPORT", "1")
    (tmp_path / "digits_search" / "optimization_history.png").unlink()
    assert main(["search", "digits_search", *FAST, "--trials", "2", "--out", str(tmp_path)]) == 0
    study = optuna.load_study(study_name="digits_search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 5 and not (tmp_path / "digits_search" / "optimization_history.png").exists()
    values = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(values)) == 5


def test_search_space_errors_are_one_line(tmp_path, capsys):
    code = main(["search", "digits_search", "--set", "search.space={model.dropoutt: {low: 0, high: 0.5}}", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'dropout'" in err and err.count("\n") == 1
    code = main(["search", "digits_search", "--set", "search.space={optimizer.lr: {low: 0.1, high: 0.01}}", "--out", str(tmp_path)])
    assert code == 2 and "low < high" in capsys.readouterr().err


def _fake_train(series_by_trial):
    """A stand-in for steepest.run.train: trial N logs series_by_trial[N] as val_loss (or raises it)."""
    from steepest.track.store import MetricStore

    def train(recipe, run_dir, console=False, extra_callbacks=()):
        number = int(str(run_dir).rsplit("trial-", 1)[1][:4])
        values = series_by_trial[number]
        if isinstance(values, Exception):
            raise values
        store = MetricStore(run_dir / "metrics.db")
        for step, value in enumerate(values, 1):
            store.log(step * 10, {"val_loss": value})
        store.close()
        return {"val_loss": values[-1]}

    return train


def test_non_finite_evaluations_never_give_a_trial_value(tmp_path, monkeypatch, capsys):
    """A trial's value is the metric of the weights it keeps (its summary); when that is not finite
    (or the run stopped on a non-finite loss) the trial is FAILED, never a value, and the search
    goes on to the next trial."""
    import steepest.tune.search as search_module
    from steepest.errors import TrainingError

    nan, inf = float("nan"), float("inf")
    monkeypatch.setattr(search_module, "train", _fake_train({
        0: [inf, inf], 1: [nan], 2: [0.7, nan, 0.4], 3: TrainingError("the loss stayed non-finite for 20 steps"), 4: [nan, 0.9, -inf]}))
    args = ["search", "digits_search", *FAST, "--set", "search.metric=val_loss", "--set", "search.pruner=none",
            "--trials", "5", "--out", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    study = optuna.load_study(study_name="digits_search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    by_number = {t.number: t for t in study.trials}
    failed = optuna.trial.TrialState.FAIL
    assert [by_number[n].state for n in (0, 1, 3, 4)] == [failed] * 4
    assert "finite" in by_number[0].user_attrs["fail_reason"] and "non-finite" in by_number[3].user_attrs["fail_reason"]
    assert by_number[2].value == 0.4
    assert study.best_trial.number == 2


def test_pruning_reports_a_non_finite_metric_as_the_worst_value():
    from types import SimpleNamespace

    from steepest.tune.search import PruningCallback

    for direction, worst in (("maximize", float("-inf")), ("minimize", float("inf"))):
        study = optuna.create_study(direction=direction, pruner=optuna.pruners.NopPruner())
        trial = study.ask()
        trainer = SimpleNamespace(state=SimpleNamespace(step=7, request_stop=lambda reason: None))
        PruningCallback(trial, "val_accuracy").on_eval_end(trainer, "val", {"val_accuracy": float("nan")})
        assert study.trials[0].intermediate_values == {7: worst}, direction
