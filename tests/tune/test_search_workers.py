"""`steepest search` with several workers on one study, several studies in one folder, a killed
worker's trial, and torchrun (which the search refuses: one process per trial)."""

import importlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed

from steepest.cli import main
from steepest.track import read_series

optuna = pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "trainer.max_epochs=2", "--set", "data.subset=300", "--set", "search.sampler=random", "--set", "search.pruner=none"]
# Built at import, before tests/conftest.py's session fixture sets STEEPEST_NO_REPORT: the workers draw no plots either.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "STEEPEST_NO_REPORT": os.environ.get("STEEPEST_NO_REPORT", "1")}

# The second worker: it imports everything a trial does first, says so, and starts when told (stdin).
WORKER = """
import sys
import optuna, sklearn.datasets, torch, torch._dynamo  # noqa: F401
import steepest.run, steepest.tune.search  # noqa: F401
from steepest.cli import main
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


def test_two_workers_started_together_on_a_new_study_run_distinct_trials(tmp_path, capsys):
    """Two worker processes open the new study at the same moment: a `python -c` one, and this test's
    own process (`main`, what `steepest search` runs), with one torch thread as the other has. Both
    import everything a trial needs before the start, so neither is ahead when they begin."""
    args = ["search", "digits_search", *TINY, "--trials", "4", "--out", str(tmp_path / "out")]
    other = subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=REPO, env=ENV, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads = torch.get_num_threads()
    try:
        for module in ("optuna", "sklearn.datasets", "torch._dynamo", "steepest.run", "steepest.tune.search"):  # as WORKER, before the start
            importlib.import_module(module)
        assert other.stdout.readline() == "ready\n", other.communicate(timeout=60)[1][-3000:]
        torch.set_num_threads(1)
        other.stdin.write("go\n")
        other.stdin.flush()
        assert main(args) == 0, capsys.readouterr().err[-3000:]
        _, err = other.communicate(timeout=600)
    finally:
        torch.set_num_threads(threads)
        if other.poll() is None:
            other.kill()
            other.communicate()
    assert other.returncode == 0, err[-3000:]
    capsys.readouterr()
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


def test_search_under_torchrun_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """Each trial is one process (its own run, process group and all); under torchrun every rank would
    run its own trial inside one process group. The refusal names the way to search in parallel.

    A rank of `torchrun --nproc_per_node=2 -m steepest search ...` is `main()` in the environment
    torchrun gives that rank, and the refusal is decided from that environment (RANK, WORLD_SIZE:
    `torchrun_env`, the rule all of steepest reads a launch by) before any process group is joined or
    anything written: so each rank is `main()` here, in the variables torchrun sets for it, without a
    launch (~15 s of imports in the launcher and both ranks)."""
    def joined(*args, **kwargs):
        raise AssertionError("a process group was joined before the refusal")

    monkeypatch.setattr(torch.distributed, "init_process_group", joined)  # a failure, where a rank would wait for the others
    line = "error: steepest search runs one process per trial; start several workers with --storage instead of torchrun"
    for rank in (0, 1):
        torchrun_sets = {"RANK": rank, "LOCAL_RANK": rank, "GROUP_RANK": 0, "ROLE_RANK": rank, "ROLE_NAME": "default", "WORLD_SIZE": 2,
                         "LOCAL_WORLD_SIZE": 2, "GROUP_WORLD_SIZE": 1, "ROLE_WORLD_SIZE": 2, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": 29500,
                         "TORCHELASTIC_RESTART_COUNT": 0, "TORCHELASTIC_MAX_RESTARTS": 0, "TORCHELASTIC_RUN_ID": "none",
                         "TORCHELASTIC_USE_AGENT_STORE": True}
        for name, value in torchrun_sets.items():
            monkeypatch.setenv(name, str(value))
        code = main(["search", "digits_search", *TINY, "--trials", "2", "--out", str(tmp_path / "out")])
        captured = capsys.readouterr()
        assert code != 0 and captured.err == line + "\n", (rank, code, captured.err[-3000:])  # one line, no traceback
        assert captured.out == ""
    assert not (tmp_path / "out").exists()


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    """A SQLite file in a missing folder, or a folder, is refused at once in one line (the attempts
    made while another worker creates a storage took ~12 s to end in "unable to open database file")."""
    missing = tmp_path / "missing" / "dir"
    code = main(["search", "digits_search", *TINY, "--storage", f"sqlite:///{missing / 'study.db'}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: search --storage sqlite:///{missing / 'study.db'}: the folder {missing} does not exist; " \
        "create it, or give a file in an existing folder\n", err
    code = main(["search", "digits_search", *TINY, "--storage", f"sqlite:///{tmp_path}", "--out", str(tmp_path / "out")])
    assert code == 2 and f"{tmp_path} is a folder; give a database file in it" in capsys.readouterr().err

