"""kill -9 in the middle of an epoch of a num_workers=2 Dataset run, then --resume: the final weights
are bit-identical to an uninterrupted run, and the resumed run reads no training sample before the
checkpoint's position (every read is counted by the Dataset itself)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from steepest.cli import main

REPO = Path(__file__).resolve().parents[2]

READSET = textwrap.dedent(
    """
    import os, time
    import numpy as np, torch
    from torch.utils.data import Dataset
    from steepest.training.events import Callback

    class Logged(Dataset):
        def __init__(self, x, y, log=None):
            self.x, self.y, self.log, self.targets = x, y, log, y
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            if self.log:
                fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                os.write(fd, f"{i}\\n".encode())
                os.close(fd)
            return torch.from_numpy(self.x[i]), int(self.y[i])

    def make(log, n_train=640):
        g = np.random.default_rng(0)
        x = g.normal(size=(n_train + 256, 16)).astype(np.float32)
        y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
        return {"train": Logged(x[:n_train], y[:n_train], log), "val": Logged(x[n_train:], y[n_train:])}

    class Slow(Callback):
        def on_step_end(self, trainer, output):
            time.sleep(0.05)
    """
)


def recipe(tmp_path: Path, log: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"component": "readset:make", "stream": True, "options": {"log": str(log)}, "batch_size": 32, "num_workers": 2},
        "model": {"name": "mlp", "hidden": [32], "dropout": 0.1},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {"max_epochs": 2, "early_stopping": None},
        "checkpoint": {"every_n_steps": 5},
        "callbacks": [{"component": "readset:Slow"}],
    }))
    return path


def reads(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_kill_mid_epoch_with_workers_then_resume_is_bit_identical_and_reads_nothing_twice(tmp_path, monkeypatch):
    """Only the killed run has a process of its own; the uninterrupted run and the resume run in this
    one (its DataLoader workers forked from it), at the same torch thread count as the killed run."""
    (tmp_path / "readset.py").write_text(READSET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "readset", raising=False)
    steps_per_epoch, total_steps = 640 // 32, 2 * 640 // 32
    log = tmp_path / "victim.log"
    victim = tmp_path / "b"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "steepest", "train", str(recipe(tmp_path, log)), "-q", "--run-dir", str(victim),
                             "--trust-code"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (victim / "checkpoints" / "step-00000010.safetensors").exists() \
            and not list((victim / "checkpoints").glob("step-*10.safetensors")):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (victim / "model.safetensors").exists(), "the run finished before it could be killed"

    ref_log = tmp_path / "ref.log"
    assert main(["train", str(recipe(tmp_path / "ref", ref_log)), "-q", "--run-dir", str(tmp_path / "a"), "--trust-code"]) == 0
    probes = len(reads(ref_log)) - total_steps * 32  # reads outside training (the input-shape probe)
    assert 0 <= probes <= 2
    steps = sorted(int(p.stem.split("-")[1]) for p in (victim / "checkpoints").glob("step-*.safetensors"))
    resume_step = steps[-1]
    assert 0 < resume_step % steps_per_epoch, "the kill must fall inside an epoch"
    before = len(reads(log))

    assert main(["train", "--run-dir", str(victim), "--resume", "--trust-code", "-q"]) == 0
    sys.modules.pop("readset", None)  # this test's module, not left for another test
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(victim / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key
    after = reads(log)[before:]
    # the resumed run trained on exactly the samples after the checkpoint: none of the epoch's earlier ones
    assert len(after) == (total_steps - resume_step) * 32 + probes, (len(after), resume_step)
