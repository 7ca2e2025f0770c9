"""A run directory: what it holds, the checks made before anything is written to it, and how a
run's recipe is read back from it.

    RUN_DIR/config.yaml       the resolved recipe (written first, before the data is read)
    RUN_DIR/data_info.json    what the data is (task, classes, normalization, tokenizer)
    RUN_DIR/metrics.db        every logged scalar of this run (SQLite)
    RUN_DIR/checkpoints/      step-N.safetensors (the whole training state), best.safetensors
    RUN_DIR/model.safetensors the final weights;  RUN_DIR/summary.json  the final metrics

A directory that holds a run is never overwritten by another: `train` refuses it unless told to
continue it (`resume`) or to replace it (`overwrite`, which deletes the old run's files first).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from steepest import __version__
from steepest.config import Recipe, recipe_to_dict
from steepest.config.arguments import RUN_CONFIG
from steepest.config.yaml_io import dump_yaml
from steepest.data import DataInfo
from steepest.errors import ConfigError
from steepest.training.checkpoint import atomic_write_bytes, sweep_temp_files

CONFIG = RUN_CONFIG
DATA_INFO = "data_info.json"
RUN_INFO = "run.json"
CONSOLE_LOG = "console.log"
RUN_FILES = (CONFIG, DATA_INFO, RUN_INFO, CONSOLE_LOG, "metrics.db", "checkpoints", "model.safetensors", "summary.json",
             "lora_adapters.safetensors", "metrics.csv", "tensorboard", "mlflow.db", "wandb",
             "report.html")  # what a run writes; --overwrite removes exactly these


def holds_run(path: Path) -> bool:
    """Whether `path` holds a run that trained: a checkpoint, final weights, a summary or a logged
    metric. A folder with only the config of a run that stopped before its first logged step (a
    recipe or data error) may be reused."""
    if not path.is_dir():
        return False
    if any((path / name).exists() for name in ("model.safetensors", "summary.json", "lora_adapters.safetensors")):
        return True
    if (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir()):
        return True
    db = path / "metrics.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT 1 FROM metrics LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return True  # unreadable: treat it as a run, never delete it silently


def prepare_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Check that `path` may receive this run, before anything is written: it is a folder (or can
    be made one), writable, and holds no other run unless `resume` (continue it) or `overwrite`
    (its run files are deleted now). Temp files of interrupted writes are swept. ConfigError
    names the problem and the fix."""
    path = Path(path)
    if resume and overwrite:
        raise ConfigError("give --resume (continue the run) or --overwrite (replace it), not both")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {path} is a file; give a folder (new or holding a run)")
    if not resume and (holds_run(path) and not overwrite):
        raise ConfigError(f"{path} already holds a run; continue it with --resume, replace it with --overwrite, "
                          "or choose another --run-dir")
    if not resume and path.is_dir():  # a replaced run, or the leftovers of one that never trained
        for name in RUN_FILES:
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--run-dir {path}: cannot write there ({exc.strerror or exc}); choose a writable folder") from None
    for folder in (path, path / "checkpoints"):
        sweep_temp_files(folder)
    return path


def write_run_info(run_dir: Path, device: str, resumed: bool = False) -> None:
    """run.json: how the run was started, so it can be reproduced: the command line, the versions
    of steepest, torch and Python, the device, and the git commit of the working directory (with
    whether it had uncommitted changes) when it is a repository. A resumed run appends itself to
    `resumes`."""
    path = Path(run_dir) / RUN_INFO
    entry = {"command": sys.argv, "cwd": os.getcwd(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "steepest": __version__, "torch": torch.__version__, "python": platform.python_version(),
             "platform": platform.platform(), "device": device, "git": _git_state()}
    info = {}
    if resumed and path.exists():
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = {}
    info = {**entry, "resumes": info.get("resumes", [])} if not info else {**info, "resumes": [*info.get("resumes", []), entry]}
    atomic_write_bytes(path, json.dumps(info, indent=2).encode())


def _git_state() -> dict[str, Any] | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor())
    return f"{model or 'cpu'} ({torch.get_num_threads()} threads)"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


class ConsoleCopy:
    """While active, everything written to stdout and stderr is also appended to `path` (the run's
    console.log), so the run directory keeps what the user saw."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> ConsoleCopy:
        self.file = self.path.open("a", encoding="utf-8", errors="replace")
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, self.file), _Tee(sys.stderr, self.file)
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout, sys.stderr = self.saved
        self.file.close()


class _Tee:
    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text: str) -> int:
        self.file.write(text.replace("\r", "\n") if "\r" in text else text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        self.file.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def write_config(recipe: Recipe, run_dir: Path) -> None:
    atomic_write_bytes(Path(run_dir) / CONFIG, dump_yaml(recipe_to_dict(recipe)).encode())


def write_data_info(info: DataInfo, run_dir: Path) -> None:
    atomic_write_bytes(Path(run_dir) / DATA_INFO, json.dumps(info.to_dict(), indent=2).encode())
