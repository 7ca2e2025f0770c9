"""A run directory: what it holds, the checks made before anything is written to it, and how a
run's recipe is read back from it.

    RUN_DIR/config.yaml       the resolved recipe (written first, before the data is read)
    RUN_DIR/data_info.json    what the data is (task, classes, normalization, tokenizer)
    RUN_DIR/metrics.db        every logged scalar of this run (SQLite)
    RUN_DIR/checkpoints/      step-N.safetensors (the whole training state), best.safetensors
    RUN_DIR/model.safetensors the final weights;  RUN_DIR/summary.json  the final metrics

    RUN_DIR/.steepest.lock    made first: marks the folder as steepest's, and is locked (flock) while a
                              process trains there

A directory that holds a run is never overwritten by another: `train` refuses it unless told to
continue it (`resume`) or to replace it (`overwrite`, which deletes the old run's files first). A
folder that is not empty and was not made by steepest is refused too, and so is a folder another
steepest process is training in. `run_file_at` says whether a path names one of a run's own files,
for the commands that write an output file next to a run.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
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
from steepest.training.checkpoint import _TEMP_FILE, atomic_write_bytes, sweep_temp_files

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not locked there
    fcntl = None

CONFIG = RUN_CONFIG
DATA_INFO = "data_info.json"
RUN_INFO = "run.json"
CONSOLE_LOG = "console.log"
RUN_FILES = (CONFIG, DATA_INFO, RUN_INFO, CONSOLE_LOG, "metrics.db", "checkpoints", "model.safetensors", "summary.json",
             "lora_adapters.safetensors", "metrics.csv", "tensorboard", "mlflow.db", "wandb",
             "report.html")  # what a run writes; --overwrite removes exactly these (and their SIDECARS)
SIDECARS = tuple(f"{db}-{kind}" for db in ("metrics.db", "mlflow.db") for kind in ("wal", "shm", "journal"))  # SQLite's
LOCK = ".steepest.lock"  # made before anything else: the folder is steepest's; locked while a process trains there
_PROBE = re.compile(r"^\.write-test-\d+$")


def _own_name(name: str) -> bool:
    """Whether `name` (an entry of a run directory) is one steepest writes there."""
    return name in RUN_FILES or name in SIDECARS or name == LOCK or bool(_TEMP_FILE.match(name) or _PROBE.match(name))


def run_file_at(run_dir: str | Path, path: str | Path) -> str | None:
    """The run's own file that writing `path` would replace, relative to `run_dir`
    ("config.yaml", "checkpoints/best.safetensors", "." for the run folder itself), or None when
    `path` is none of them. Relative paths and symlinks (of either) are resolved first. A run's own
    files: RUN_FILES and everything under the folders among them, SQLite's sidecars, the lock file
    and temp files. Other files in the folder (predictions.csv, model.onnx) are not."""
    run, target = _resolved(run_dir), _resolved(path)
    if target == run:
        return "."
    try:
        rel = target.relative_to(run)
    except ValueError:
        return None
    return rel.as_posix() if _own_name(rel.parts[0]) else None


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: as written
        return Path(os.path.abspath(path))


def refuse_run_file(run_dir: str | Path, path: str | Path, option: str = "-o") -> None:
    """ConfigError when `path` (given as `option`) would replace one of the run's own files (see
    `run_file_at`) or is a folder."""
    name = run_file_at(run_dir, path)
    if name == ".":
        raise ConfigError(f"{option} {path} is the run directory itself; give a file name, e.g. {Path(path) / 'predictions.txt'}")
    if name is not None:
        raise ConfigError(f"{option} {path} would overwrite {name} of the run {run_dir}; write to another file")
    if Path(path).is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name in it")


def refuse_output(run_dirs: list[str | Path], out: str | Path, option: str, default: str, allow: tuple[str, ...] = ()) -> None:
    """ConfigError, before any work, when an output path `out` (given as `option`: export -o,
    report -o, the diagnostics' --json) is empty, a folder, or would replace one of the own files of
    a run in `run_dirs` (`run_file_at`; names in `allow` excepted); the message suggests `default`,
    the file name written when `option` is left out."""
    if not str(out).strip():
        raise ConfigError(f"{option} is empty; give a file name, or leave {option} out for the default")
    for run_dir in run_dirs:
        name = run_file_at(run_dir, out)
        if name not in (None, ".") and name not in allow:
            raise ConfigError(f"{option} {out} would overwrite {name} of the run {run_dir}; write to another file, "
                              f"e.g. {Path(run_dir) / default} (the default)")
    if Path(out).is_dir():
        raise ConfigError(f"{option} {out} is a folder; give a file name in it, e.g. {Path(out) / default}")


# -- the lock: one steepest process trains in a folder at a time ----------------------------------------
_HELD: dict[Path, list[int]] = {}  # resolved run dir -> [file descriptor, count] held by this process


def _drop_locks_in_child() -> None:
    """After a fork, in the child: close the lock descriptors it inherited. An flock belongs to the
    open file description, shared by every copy of the descriptor, so a DataLoader worker left
    alive for a moment after its parent was killed would otherwise keep the folder locked."""
    for fd, _ in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


def lock_run_dir(path: str | Path) -> None:
    """Lock RUN_DIR/.steepest.lock (an exclusive, non-blocking flock, created when missing), held by
    this process until `release_run_dir` (as often as it was taken) or its exit, a crash included
    (the OS drops the lock with the process). A forked child (a DataLoader worker) closes its copy
    of the descriptor at once (`_drop_locks_in_child`), so a run killed while its workers are still
    shutting down can be resumed at once. Reentrant within a process. ConfigError when another
    process holds it, naming that process."""
    key = _resolved(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    fd = os.open(Path(path) / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:  # any other errno: a file system without locks (some network mounts): unlocked, as before
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise ConfigError(f"{path} is in use by another steepest process{pid}; wait for it or choose another --run-dir") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only for the message above
    _HELD[key] = [fd, 1]


def release_run_dir(path: str | Path) -> None:
    """Undo one `lock_run_dir` of this process; the last one unlocks the folder (no-op when it
    holds none). The lock file stays, empty: it marks the folder as steepest's."""
    key = _resolved(path)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    fd = held[0]
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    os.close(fd)


def _foreign(path: Path) -> list[str]:
    """What in the existing folder `path` keeps a run from starting there unasked: nothing when it
    is empty or holds only the leftovers of a steepest run that never trained (steepest's lock file,
    made first, and only names steepest writes); otherwise its entries, steepest's or not."""
    names = sorted(p.name for p in path.iterdir())
    if all(_TEMP_FILE.match(n) or _PROBE.match(n) for n in names):
        return []
    if LOCK in names and all(_own_name(n) for n in names):
        return []
    return names


def holds_run(path: Path) -> bool:
    """Whether `path` holds a run that trained: a checkpoint, final weights, a summary or a logged
    metric. A folder with only the config of a run that stopped before its first logged step (a
    recipe or data error) may be reused. Only a folder steepest made holds a run (its lock file or a config.yaml):
    another's checkpoints/ or summary.json make it a foreign folder (see `_foreign`), not a run to continue."""
    if not path.is_dir() or not ((path / LOCK).exists() or (path / CONFIG).exists()):
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
    """Check that `path` may receive this run, before anything is written, and lock it for this
    process (see `lock_run_dir`; call `release_run_dir` when the run ends). It must be a folder (or
    can be made one), writable, used by no other steepest process, and hold no other run unless
    `resume` (continue it) or `overwrite` (its run files are deleted now). A folder that is not
    empty and holds anything but the leftovers of a steepest run that never trained is refused
    unless `overwrite`. Temp files of interrupted writes are swept. ConfigError names the problem
    and the fix."""
    path = Path(path)
    if resume and overwrite:
        raise ConfigError("give --resume (continue the run) or --overwrite (replace it), not both")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {path} is a file; give a folder (new or holding a run)")
    locked = False
    try:
        if (path / LOCK).is_file():  # another process training there is the reason to give, before any other
            lock_run_dir(path)
            locked = True
        if not resume and not overwrite and path.is_dir():
            if holds_run(path):
                raise ConfigError(f"{path} already holds a run; continue it with --resume, replace it with --overwrite, "
                                  "or choose another --run-dir")
            if foreign := _foreign(path):
                shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
                doomed = [n for n in foreign if _own_name(n)]
                deletes = f" (deleting its {', '.join(doomed)})" if doomed else ""
                raise ConfigError(f"{path} is not empty and not a steepest run (it holds {shown}); choose another --run-dir, "
                                  f"or pass --overwrite to train there{deletes}")
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"--run-dir {path}: cannot write there ({exc.strerror or exc}); choose a writable folder") from None
        if not locked:
            lock_run_dir(path)
            locked = True
        if not resume:  # a replaced run, or the leftovers of one that never trained
            for name in (*RUN_FILES, *SIDECARS):
                target = path / name
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink(missing_ok=True)
        for folder in (path, path / "checkpoints"):
            sweep_temp_files(folder)
    except BaseException:
        if locked:
            release_run_dir(path)
        raise
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
