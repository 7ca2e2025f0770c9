"""Nothing is lost: a run directory is never overwritten by another run, a refused resume writes
nothing, interrupted writes are swept, and any checkpoint that cannot be used falls back to the
previous one (issue "Faults found by users and testers", items 12-14, 17, 20)."""

import json
import os
import sqlite3

import pytest
import torch
from safetensors.torch import save as st_save

from steepest.cli import main
from steepest.training.checkpoint import FORMAT, CheckpointManager, _digest, load_state, save_state
from steepest.training.serialization import flatten

QUICK = ["--set", "trainer.max_steps=6", "--set", "trainer.max_epochs=null", "--set", "checkpoint.every_n_steps=3",
         "--set", "trainer.log_every_n_steps=2", "-q"]


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def metric_steps(run):
    with sqlite3.connect(run / "metrics.db") as db:
        return sorted({s for (s,) in db.execute("SELECT step FROM metrics WHERE name = 'train_loss'")})


def test_a_second_run_into_the_same_directory_is_refused_unless_overwritten(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    before = files(run)
    capsys.readouterr()
    assert main(["train", "breast_cancer_sgd", "--run-dir", str(run), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--overwrite" in err
    assert files(run) == before  # nothing touched
    assert main(["train", "breast_cancer_sgd", "--run-dir", str(run), "--overwrite", *QUICK]) == 0
    assert "breast_cancer" in (run / "config.yaml").read_text()
    assert metric_steps(run) == [2, 4, 6]  # one run's rows only
    assert json.loads((run / "summary.json").read_text())["data"] == "breast_cancer"


def test_a_refused_resume_writes_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    before = files(run)
    capsys.readouterr()
    # a different recipe on the command line: the checkpoints belong to another one
    assert main(["train", "breast_cancer_sgd", "--run-dir", str(run), "--resume", *QUICK]) == 2
    assert "different recipe" in capsys.readouterr().err
    assert files(run) == before
    # the run's own recipe still resumes afterwards (the refusal did not rewrite config.yaml)
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "trainer.max_steps=9", *QUICK[2:]]) == 0


def test_resume_without_a_run_directory(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--run-dir", str(empty), "--resume", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and err.count("\n") == 1
    assert not any(empty.iterdir())  # nothing written
    assert main(["train", "breast_cancer_sgd", "--run-dir", str(empty), "--resume", *QUICK]) == 0
    assert "starting breast_cancer_sgd" in capsys.readouterr().err
    assert "breast_cancer" in (empty / "config.yaml").read_text()


def test_config_is_written_before_the_data_is_read(tmp_path, monkeypatch):
    import steepest.run.build as build

    def fail(*a, **k):
        raise KeyboardInterrupt  # killed while the data loads

    monkeypatch.setattr(build, "load_data", fail)
    assert main(["train", "--run-dir", str(tmp_path / "r"), *QUICK]) == 130
    assert (tmp_path / "r" / "config.yaml").exists()


def test_temp_files_of_interrupted_writes_are_swept(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    dead = 2**22 + 12345  # no such process
    stale = [run / "checkpoints" / f".step-00000009.safetensors.tmp-{dead}", run / f".summary.json.tmp-{dead}"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "trainer.max_steps=9", *QUICK[2:]]) == 0
    assert not any(p.exists() for p in stale)


@pytest.mark.parametrize("tamper", ["step_text", "step_huge", "deep_json", "wrong_shape"])
def test_a_checkpoint_that_verifies_but_cannot_be_used_falls_back(tmp_path, tamper, capsys):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    newest = CheckpointManager(run / "checkpoints").step_files()[-1][1]
    state = load_state(newest)
    if tamper == "step_text":
        state["train_state"]["step"] = "abc"
    elif tamper == "step_huge":
        state["train_state"]["step"] = 10**9  # would "finish" the run at once
    elif tamper == "deep_json":  # a 100k-deep skeleton, signed with a matching checksum
        tensors = {}
        flatten(state, tensors)
        skeleton = "[" * 100_000 + "]" * 100_000
        meta = {"format": FORMAT, "state": skeleton, "sha256": _digest(skeleton, tensors)}
        newest.write_bytes(st_save(tensors, metadata=meta))
    else:
        first = next(iter(state["model"]))
        state["model"][first] = torch.zeros(3)
    if tamper != "deep_json":
        save_state(newest, state)  # re-signed: the checksum holds, the contents do not
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "trainer.max_steps=9", *QUICK[2:]]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "falling back" in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 9  # resumed from step 3 and trained to 9, not "finished" at 10**9


def test_run_dir_that_is_a_file_or_read_only(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert main(["train", "--run-dir", str(a_file), *QUICK]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(a_file / "run"), *QUICK]) == 2  # a folder that cannot be made
    assert "cannot write" in capsys.readouterr().err
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["train", "--run-dir", str(ro / "run"), *QUICK]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_runs_lists_a_run_whose_files_are_truncated(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    (run / "summary.json").write_text("[1, 2")
    capsys.readouterr()
    assert main(["runs", "--root", str(tmp_path)]) == 0
    assert "unreadable" in capsys.readouterr().out
    (run / "metrics.db").write_bytes(b"not a database at all" * 10)
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "trainer.max_steps=9", *QUICK[2:]]) == 2
    assert "not a metrics database" in capsys.readouterr().err


@pytest.mark.parametrize("content", ['{"task": "classification"', "[]", '{"source": 1}', "\udcff"])
def test_predict_export_doctor_and_report_with_an_odd_data_info(tmp_path, capsys, content):
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    (run / "data_info.json").write_text(content, errors="surrogateescape")
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64)) + "\n" + ",".join(["0"] * 64) + "\n")
    capsys.readouterr()
    for args in (["predict", str(run), str(rows)], ["export", str(run)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "data_info.json" in err, (args, err)
    assert main(["doctor", "--run-dir", str(run)]) in (0, 1)  # the curves are still judged
    assert main(["report", str(run)]) == 0  # the report shows what there is
