"""Integration tests that run the real `steepest` command."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from steepest.cli import main
from steepest.track import read_series

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "steepest", *args], capture_output=True, text=True, env=env, cwd=kw.pop("cwd", REPO), **kw)


def test_main_job_reaches_95_percent_on_digits(tmp_path, capsys):
    """The default recipe on the 270 test digits. Measured over trainer seeds 0-9: 0.963-0.981 (260-265
    right), 262 for 6 of the 10, so a bound of 0.97 (262) held or not with the last few float roundings; 0.95
    (257) leaves about 3 digits below the worst seed."""
    assert main(["train", "--run-dir", str(tmp_path / "run"), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy: ")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95, summary
    for key in ("val_accuracy", "val_loss", "steps", "epochs", "wall_seconds", "test_macro_f1"):
        assert key in summary
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / "model.safetensors").exists()
    assert len(list((run / "checkpoints").glob("step-*.safetensors"))) <= 2
    losses = read_series(run / "metrics.db", "train_loss")
    assert len(losses) >= 10 and losses[-1][1] < losses[0][1]
    assert main(["runs", "--root", str(tmp_path)]) == 0
    assert "run" in capsys.readouterr().out


def test_user_error_prints_one_line_without_traceback():
    result = run_cli("train", "--set", "optimizer.lr=-1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "optimizer.lr" in result.stderr


SLOW_CALLBACK = textwrap.dedent(
    """
    import time
    from steepest.training.events import Callback

    class Slow(Callback):
        name = "slow"
        def __init__(self, seconds=0.02):
            self.seconds = seconds
        def on_step_end(self, trainer, output):
            time.sleep(self.seconds)
    """
)


def test_sigkill_then_resume_is_bit_identical(tmp_path, monkeypatch):
    """A `steepest train` process killed with SIGKILL between checkpoints resumes to the uninterrupted
    run's weights bit for bit. Only the killed run needs a process of its own: the uninterrupted run and
    the resume run in this one (same torch thread count, so the same float roundings)."""
    (tmp_path / "slowdown.py").write_text(SLOW_CALLBACK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slowdown", raising=False)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    args = ["train", "digits_mlp", "-q", "--set", "trainer.max_epochs=4", "--set", "checkpoint.every_n_steps=7",
            "--set", "callbacks=[{component: 'slowdown:Slow', seconds: 0.01}]", "--set", "model.dropout=0.2"]
    victim_dir = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "steepest", *args, "--run-dir", str(victim_dir)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list((victim_dir / "checkpoints").glob("step-*.safetensors"))) < 2:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert not (victim_dir / "model.safetensors").exists(), "the run finished before it could be killed"
    assert len(list((victim_dir / "checkpoints").glob("step-*.safetensors"))) >= 2, proc.stderr.read().decode()[-3000:]

    assert main([*args, "--run-dir", str(tmp_path / "a")]) == 0  # the uninterrupted run
    assert main(["train", "--run-dir", str(victim_dir), "--resume", "--trust-code", "-q"]) == 0
    sys.modules.pop("slowdown", None)  # this test's module, not left for another test's `slowdown`
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(victim_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key
    sa = json.loads((tmp_path / "a" / "summary.json").read_text())
    sb = json.loads((victim_dir / "summary.json").read_text())
    assert sa["steps"] == sb["steps"] and sa["test_loss"] == sb["test_loss"]


def test_resume_skips_corrupt_latest_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--set", "trainer.max_epochs=3", "--set", "checkpoint.every_n_steps=10", "-q"]
    assert main(["train", "--run-dir", str(tmp_path / "ref"), *common]) == 0
    # The same run, then its newest checkpoint is damaged: resume must fall back to the one before.
    assert main(["train", "--run-dir", str(run), *common]) == 0
    files = sorted((run / "checkpoints").glob("step-*.safetensors"))
    assert len(files) == 2
    files[-1].write_bytes(files[-1].read_bytes()[:100])
    (run / "model.safetensors").unlink()
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--resume", *common]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "falling back" in err, err  # the user sees it, in one line
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(run / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)


def test_csv_of_real_tabular_data_trains(tmp_path, capsys):
    import sklearn.datasets as skd

    bunch = skd.load_breast_cancer()
    header = ",".join(f"f{i}" for i in range(bunch.data.shape[1])) + ",diagnosis"
    rows = [",".join(f"{v:.6g}" for v in x) + ("," + ("benign" if t else "malignant")) for x, t in zip(bunch.data, bunch.target)]
    path = tmp_path / "cancer.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    recipe = tmp_path / "csv.yaml"
    recipe.write_text(f"data: {{format: csv, path: {path}, target: diagnosis}}\ntrainer: {{max_epochs: 30}}\n")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.93, summary


def test_bad_data_rejected_before_training_with_row(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{i},{i * 2},{i % 2}" for i in range(20)) + "\n3,nan,1\n")
    code = main(["train", "--set", "data={format: csv, path: " + str(path) + ", target: y}", "--run-dir", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "row 20 (line 22) contains NaN" in err and err.count("\n") == 1


def test_quiet_quiets_the_libraries_too(tmp_path, monkeypatch, capsys):
    """-q sets the switches the Hugging Face datasets progress bars and MLflow's INFO lines read when
    those packages are imported (they printed through -q); a value the user set is kept."""
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "ERROR")
    assert main(["train", "--run-dir", str(tmp_path / "run"), "-q", "--set", "trainer.max_steps=2"]) == 0
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1" and os.environ["MLFLOW_LOGGING_LEVEL"] == "ERROR"
    assert capsys.readouterr().err == ""
