"""What a run directory holds, read for a report: every file is optional and an unreadable one is
skipped (a report of an interrupted or damaged run still shows what there is)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steepest.config.arguments import RUN_CONFIG
from steepest.config.yaml_io import read_yaml
from steepest.errors import SteepestError
from steepest.run.listing import run_status
from steepest.training.checkpoint import load_state


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


@dataclass
class RunFiles:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    data_info: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # doctor.json, sharpness.json, batch_size.json, lr_finder.json
    best_step: int | None = None
    status: str = "not started"  # see steepest.run.listing.run_status
    notes: list[str] = field(default_factory=list)  # what could not be read (shown at the top of the report)

    @property
    def name(self) -> str:
        return self.path.name


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_run(run_dir: str | Path) -> RunFiles:
    """The run's recipe, summary, data info, run info, every logged series and the diagnostics
    files next to them. SteepestError when `run_dir` is not a run directory at all."""
    path = Path(run_dir)
    if not (path / RUN_CONFIG).is_file():
        raise SteepestError(f"{path} is not a run directory (no {RUN_CONFIG}); give a folder written by steepest train")
    run = RunFiles(path)
    try:
        run.config = _dict(read_yaml(path / RUN_CONFIG))
    except SteepestError:
        pass
    summary = read_json(path / "summary.json")
    run.summary = _dict(summary)
    run.status = run_status(path, summary if isinstance(summary, dict) else None)
    run.data_info = _dict(read_json(path / "data_info.json"))
    run.run_info = _dict(read_json(path / "run.json"))
    run.series = read_all_series(path / "metrics.db")
    if (path / "metrics.db").is_file() and not run.series and _unreadable_db(path / "metrics.db"):
        run.notes.append("metrics.db cannot be read: no learning curves, gradient norms or throughput")
    for name in ("doctor", "sharpness", "batch_size", "lr_finder"):
        found = read_json(path / f"{name}.json")
        if found is not None:
            run.extras[name] = found
    run.best_step = _best_step(path)
    return run


def _unreadable_db(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            conn.execute("SELECT 1 FROM metrics LIMIT 1")
        return False
    except sqlite3.Error:
        return True


def read_all_series(db: Path) -> dict[str, list[tuple[int, float]]]:
    if not db.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT name, step, value FROM metrics ORDER BY name, step, rowid").fetchall()
    except sqlite3.Error:
        return {}
    out: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in rows:
        out.setdefault(name, []).append((int(step), float("nan") if value is None else float(value)))
    return out


def _best_step(path: Path) -> int | None:
    """The step of the best checkpoint (its file holds it), when there is one that loads."""
    best = path / "checkpoints" / "best.safetensors"
    if not best.is_file():
        return None
    try:
        step = load_state(best).get("step")
    except SteepestError:
        return None
    return step if isinstance(step, int) else None
