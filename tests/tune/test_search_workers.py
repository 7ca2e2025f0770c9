"""`steepest search` with several workers on one study, several studies in one folder, a killed
worker's trial, and torchrun (which the search refuses: one process per trial)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from steepest.cli import main
from steepest.track import read_series

optuna = pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "trainer.max_epochs=2", "--set", "data.subset=300", "--set", "search.sampler=random", "--set", "search.pruner=none"]
# Built at import, before tests/conftest.py's session fixture sets STEEPEST_NO_REPORT: the workers draw no plots either.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "STEEPEST_NO_REPORT": os.environ.get("STEEPEST_NO_REPORT", "1")}

# Both workers import everything first, then wait for each other, so they open the new study at the same moment.
TOGETHER = """
import os, sys, time
from pathlib import Path
import optuna, torch  # noqa: F401
import steepest.run, steepest.tune.search  # noqa: F401
from steepest.cli import main
ready = Path(sys.argv[1])
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.001)
sys.exit(main(sys.argv[2:]))
"""


def test_two_workers_started_together_on_a_new_study_run_distinct_trials(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    args = ["search", "digits_search", *TINY, "--trials", "4", "--out", str(tmp_path / "out")]
    workers = [subprocess.Popen([sys.executable, "-c", TOGETHER, str(ready), *args], cwd=REPO, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, results):
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="digits_search", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 8 and len(complete) == 8
    points = {tuple(sorted(t.params.items())) for t in complete}
    assert len(points) >= 7, points
    seeds = [t.user_attrs["sampler_seed"] for t in complete]
    assert len(set(seeds)) == 8  # recorded, and never shared between workers
    assert len({t.user_attrs["run_dir"] for t in complete}) == 8


def test_two_studies_in_one_out_folder_keep_their_own_trials(tmp_path, capsys):
    out = tmp_path / "out"
    for name, epochs in (("first", 1), ("second", 3)):
        assert main(["search", "digits_search", *TINY, "--set", f"trainer.max_epochs={epochs}", "--study", name,
                     "--trials", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    dirs = set()
    for name, epochs in (("first", 1), ("second", 3)):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
        for t in study.trials:
            run_dir = Path(t.user_attrs["run_dir"])
            dirs.add(run_dir)
            series = [v for _, v in read_series(run_dir / "metrics.db", "val_accuracy")]
            assert len(series) == epochs, (name, t.number, series)  # its own evaluations only
            assert t.value == max(series)
        assert (out / name / "best_recipe.yaml").exists()
    assert len(dirs) == 4 and len({p for p in out.rglob("metrics.db")}) == 4


def test_a_killed_workers_trial_is_failed_and_retried(tmp_path, capsys):
    """A trial left RUNNING by a worker that died (its heartbeat stopped) is failed by the next
    worker and run again with the same parameters."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="digits_search", storage=storage, direction="maximize")
    dead = study.ask()
    params = {"optimizer.lr": dead.suggest_float("optimizer.lr", 1e-4, 3e-2, log=True),
              "model.dropout": dead.suggest_float("model.dropout", 0.0, 0.5),
              "optimizer.weight_decay": dead.suggest_float("optimizer.weight_decay", 1e-5, 1e-1, log=True)}
    with sqlite3.connect(tmp_path / "study.db") as db:  # the dead worker's last heartbeat, an hour ago
        db.execute("INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, datetime('now', '-1 hour'))", (dead._trial_id,))
    assert main(["search", "digits_search", *TINY, "--trials", "1", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    trials = optuna.load_study(study_name="digits_search", storage=url).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE and retried[0].params == params


@pytest.mark.skipif(not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_search_under_torchrun_is_refused_in_one_line(tmp_path):
    """Each trial is one process (its own run, process group and all); under torchrun every rank would
    run its own trial inside one process group. The refusal names the way to search in parallel."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "steepest", "search", "digits_search", *TINY,
                           "--trials", "2", "--out", str(tmp_path / "out")], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    line = "error: steepest search runs one process per trial; start several workers with --storage instead of torchrun"
    assert done.stderr.count(line) == 2, done.stderr[-3000:]  # one line from each rank
    assert f'File "{REPO / "steepest"}' not in done.stderr and "[rank" not in done.stderr  # no traceback from a rank
    assert not (tmp_path / "out").exists()


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'study.db'}"
    code = main(["search", "digits_search", *TINY, "--storage", url, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: search --storage") and err.count("\n") == 1, err
