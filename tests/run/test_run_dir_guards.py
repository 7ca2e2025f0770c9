"""A run directory is never overwritten silently, whatever the environment, the folder or another
process: one rule for RANK/WORLD_SIZE (a stray RANK is rank 0), a bad torchrun environment is a
one-line error, a folder that is not steepest's is refused rather than emptied, a folder is trained
in by one process at a time (RUN_DIR/.steepest.lock), and `predict -o` never replaces a run's file."""

import fcntl
import os
import signal
import subprocess
import sys

import pytest

from steepest.cli import main
from steepest.errors import ConfigError
from steepest.run.directory import LOCK, lock_run_dir, release_run_dir, run_file_at
from steepest.training import distributed
from steepest.training.distributed import DistContext, is_first_process, torchrun_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = ["--set", "trainer.max_steps=4", "--set", "trainer.max_epochs=null", "--set", "checkpoint.every_n_steps=2",
         "--set", "trainer.log_every_n_steps=2", "-q"]
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture(autouse=True)
def _no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_STRAY_WARNED", set())


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    saved = {name: os.environ.pop(name) for name in TORCHRUN_VARS if name in os.environ}
    try:
        assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    finally:
        os.environ.update(saved)
    return run


def rows_csv(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64)) + "\n" + ",".join(["0"] * 64) + "\n")
    return rows


# -- 1. RANK without WORLD_SIZE is a single process: rank 0, with all of rank 0's checks and files ------------
def test_a_stray_rank_does_not_overwrite_a_finished_run(tmp_path, trained, monkeypatch, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    for path, data in files(trained).items():
        (victim / path).parent.mkdir(parents=True, exist_ok=True)
        (victim / path).write_bytes(data)
    before = files(victim)
    monkeypatch.setenv("RANK", "1")
    capsys.readouterr()
    assert main(["train", "--run-dir", str(victim), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "warning: RANK=1 is set but WORLD_SIZE is not" in err, err
    assert "already holds a run" in err and "Traceback" not in err
    assert files(victim) == before


def test_a_stray_rank_run_is_a_whole_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    run = tmp_path / "fresh"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    assert (run / "config.yaml").exists() and (run / "summary.json").exists() and (run / "model.safetensors").exists()
    out, err = capsys.readouterr()
    assert "test accuracy" in out  # rank 0 reports
    assert "warning: " in err and "single process" in err, err


def test_world_size_one_is_a_single_process():
    assert torchrun_env({"WORLD_SIZE": "1", "RANK": "0"}) == DistContext()
    assert torchrun_env({}) == DistContext()
    assert torchrun_env({"RANK": "", "WORLD_SIZE": " "}) == DistContext()
    with pytest.warns(RuntimeWarning, match="WORLD_SIZE is 1"):
        assert torchrun_env({"WORLD_SIZE": "1", "RANK": "3"}) == DistContext()
    assert torchrun_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistContext(3, 4, 1)
    assert torchrun_env({"WORLD_SIZE": "2", "RANK": "1"}) == DistContext(1, 2, 0)


# -- 2. a torchrun environment that cannot be read is a one-line error ----------------------------------------
@pytest.mark.parametrize("env, message", [
    ({"RANK": "abc"}, "RANK='abc' is not an integer; unset it or launch with torchrun"),
    ({"WORLD_SIZE": "x"}, "WORLD_SIZE='x' is not an integer"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK is unset: launch with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "zero"}, "LOCAL_RANK='zero' is not an integer"),
    ({"WORLD_SIZE": "-2", "RANK": "0"}, "WORLD_SIZE=-2 is negative"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "WORLD_SIZE=0"),
])
def test_a_bad_torchrun_environment_is_a_config_error(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        torchrun_env(env)


@pytest.mark.parametrize("env, message", [({"RANK": "abc"}, "RANK='abc' is not an integer"),
                                          ({"WORLD_SIZE": "x"}, "WORLD_SIZE='x' is not an integer"),
                                          ({"WORLD_SIZE": "2"}, "RANK is unset")])
def test_train_with_a_bad_torchrun_environment_is_refused_in_one_line(tmp_path, monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_first_process()  # never raises: what is said once is said
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "torchrun" in err
    assert not run.exists()  # nothing written


# -- 3. a folder that is not a run is refused, not emptied -----------------------------------------------------
def users_folder(folder):
    (folder / "wandb").mkdir(parents=True)
    (folder / "wandb" / "run-1.wandb").write_text("the user's own wandb run")
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events.out").write_text("events")
    (folder / "config.yaml").write_text("my: own config\n")
    (folder / "report.html").write_text("<html>my report</html>")
    (folder / "metrics.csv").write_text("a,b\n1,2\n")
    return folder


def test_a_folder_with_the_users_files_is_refused(tmp_path, capsys):
    folder = users_folder(tmp_path / "mine")
    before = files(folder)
    assert main(["train", "--run-dir", str(folder), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err and "--run-dir" in err and "--overwrite" in err, err
    assert files(folder) == before and not (folder / LOCK).exists()  # nothing deleted, nothing added


def test_only_names_steepest_writes_but_not_made_by_steepest_is_refused(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own config\n")
    assert main(["train", "--run-dir", str(folder), *QUICK]) == 2
    assert "not a steepest run" in capsys.readouterr().err
    assert (folder / "config.yaml").read_text() == "my: own config\n"


def test_overwrite_trains_in_a_users_folder_and_keeps_what_is_not_a_run_file(tmp_path):
    folder = users_folder(tmp_path / "mine")
    (folder / "notes.txt").write_text("keep me")
    assert main(["train", "--run-dir", str(folder), "--overwrite", *QUICK]) == 0
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "summary.json").exists()
    assert not (folder / "wandb").exists()  # asked for: --overwrite replaces what a run writes


def test_the_leftovers_of_a_run_that_never_trained_are_swept(tmp_path, monkeypatch, capsys):
    import steepest.run.build as build

    real = build.load_data

    def fail(*a, **k):
        raise KeyboardInterrupt  # killed while the data loads

    monkeypatch.setattr(build, "load_data", fail)
    run = tmp_path / "r"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 130
    assert (run / "config.yaml").exists() and (run / LOCK).exists()
    monkeypatch.setattr(build, "load_data", real)
    assert main(["train", "breast_cancer_sgd", "--run-dir", str(run), *QUICK]) == 0  # no --overwrite needed
    assert "breast_cancer" in (run / "config.yaml").read_text()
    monkeypatch.setattr(build, "load_data", fail)
    other = tmp_path / "other"
    assert main(["train", "--run-dir", str(other), *QUICK]) == 130
    (other / "notes.txt").write_text("the user's")  # leftovers and something else: not steepest's to judge
    monkeypatch.setattr(build, "load_data", real)
    capsys.readouterr()
    assert main(["train", "--run-dir", str(other), *QUICK]) == 2
    assert "notes.txt" in capsys.readouterr().err and (other / "config.yaml").exists()


# -- 4. one process trains in a folder at a time ----------------------------------------------------------------
def hold(run, pid="4242"):
    """Another process's lock on `run` (a second open file description conflicts as one would)."""
    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, f"{pid}\n".encode())
    return fd


def test_a_folder_in_use_is_refused_for_train_resume_and_overwrite(tmp_path, capsys):
    new = tmp_path / "new"
    fd = hold(new)
    try:
        capsys.readouterr()
        assert main(["train", "--run-dir", str(new), *QUICK]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{new} is in use by another steepest process (pid 4242)" in err
        assert "choose another --run-dir" in err
        assert sorted(p.name for p in new.iterdir()) == [LOCK]
    finally:
        os.close(fd)
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *QUICK]) == 0
    before = {k: v for k, v in files(run).items() if k.name != LOCK}
    fd = hold(run, "777")
    try:
        for extra in (["--resume"], ["--overwrite"], []):
            capsys.readouterr()
            assert main(["train", "--run-dir", str(run), *QUICK, *extra]) == 2, extra
            assert "in use by another steepest process (pid 777)" in capsys.readouterr().err
        assert {k: v for k, v in files(run).items() if k.name != LOCK} == before
    finally:
        os.close(fd)
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "trainer.max_steps=6", *QUICK[2:]]) == 0


def test_the_lock_is_held_while_training_and_released_after(tmp_path):
    from steepest.config import load_recipe
    from steepest.run import train
    from steepest.training.events import Callback

    seen = []

    class Probe(Callback):
        name = "probe"

        def on_fit_start(self, trainer):
            fd = os.open(run / LOCK, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append((run / LOCK).read_text().strip())
            finally:
                os.close(fd)

    run = tmp_path / "run"
    recipe = load_recipe("digits_mlp", ["trainer.max_steps=2", "trainer.max_epochs=null"])
    train(recipe, run, console=False, extra_callbacks=[Probe()])
    assert seen == [str(os.getpid())]  # held by this process, which it names
    fd = hold(run)  # and free once the run ended
    os.close(fd)
    assert (run / LOCK).read_text() == "4242\n"


def test_lock_is_reentrant_in_a_process_and_dropped_with_a_crashed_one(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    lock_run_dir(run)
    lock_run_dir(run)
    release_run_dir(run)
    with pytest.raises(BlockingIOError):
        os.close(hold(run))  # still held once
    release_run_dir(run)
    os.close(hold(run))
    crashed = tmp_path / "crashed"
    code = ("import os, signal, sys; from steepest.run.directory import prepare_run_dir; prepare_run_dir(sys.argv[1]); "
            "open(os.path.join(sys.argv[1], 'config.yaml'), 'w').write('name: x\\n'); os.kill(os.getpid(), signal.SIGKILL)")
    result = subprocess.run([sys.executable, "-c", code, str(crashed)], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (crashed / LOCK).read_text().strip().isdigit()  # the crashed process's pid stays, its lock does not
    assert main(["train", "--run-dir", str(crashed), *QUICK]) == 0  # and its leftovers are steepest's: swept
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "crashed" in out and "completed" in out and LOCK not in out


# -- 6. predict -o never replaces a run's own file; predictions are written atomically ---------------------------
@pytest.mark.parametrize("name", ["config.yaml", "model.safetensors", "summary.json", "metrics.db", "checkpoints/best.safetensors",
                                  "checkpoints/step-00000004.safetensors", "checkpoints/new.txt", LOCK, ".", "checkpoints"])
def test_predict_output_onto_a_run_file_is_refused(tmp_path, trained, capsys, name):
    rows = rows_csv(tmp_path)
    before = files(trained)
    capsys.readouterr()
    assert main(["predict", str(trained), str(rows), "-o", str(trained / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"-o {trained / name}" in err and ("would overwrite" in err or "is the run directory itself" in err), err
    assert files(trained) == before


def test_predict_output_through_a_relative_path_or_a_symlink_is_refused(tmp_path, trained, monkeypatch, capsys):
    rows = rows_csv(tmp_path)
    before = files(trained)
    link = tmp_path / "preds.txt"
    link.symlink_to(trained / "config.yaml")
    assert main(["predict", str(trained), str(rows), "-o", str(link)]) == 2
    assert "would overwrite config.yaml" in capsys.readouterr().err
    monkeypatch.chdir(trained)
    assert main(["predict", ".", str(rows), "-o", "summary.json"]) == 2
    assert main(["predict", str(trained), str(rows), "-o", "./checkpoints/../model.safetensors"]) == 2
    assert files(trained) == before


def test_predictions_are_written_atomically_next_to_the_run(tmp_path, trained, monkeypatch, capsys):
    import steepest.training.checkpoint as checkpoint

    rows = rows_csv(tmp_path)
    out = tmp_path / "preds.txt"
    out.write_text("the previous predictions\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(checkpoint.os, "fsync", full_disk)
        assert main(["predict", str(trained), str(rows), "-o", str(out)]) == 2
    assert out.read_text() == "the previous predictions\n"  # not truncated by the failed write
    assert main(["predict", str(trained), str(rows), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1
    beside = tmp_path / "link.txt"
    beside.symlink_to(out)
    assert main(["predict", str(trained), str(rows), "-o", str(beside)]) == 0
    assert beside.is_symlink()  # written through the link, which stays


def test_run_file_at(tmp_path, trained):
    assert run_file_at(trained, trained / "config.yaml") == "config.yaml"
    assert run_file_at(trained, trained / "metrics.db-wal") == "metrics.db-wal"
    assert run_file_at(trained, trained / "checkpoints" / "x" / "y") == "checkpoints/x/y"
    assert run_file_at(trained, trained) == "."
    assert run_file_at(trained, trained / "predictions.csv") is None
    assert run_file_at(trained, trained / "model.onnx") is None
    assert run_file_at(trained, tmp_path / "config.yaml") is None
    alias = tmp_path / "alias"
    alias.symlink_to(trained)
    assert run_file_at(alias, trained / "summary.json") == "summary.json"
    assert run_file_at(str(trained), str(alias / "model.safetensors")) == "model.safetensors"
