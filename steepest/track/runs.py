"""Run directories: where a run's files live, and the list `steepest runs` prints."""

from __future__ import annotations

import json
import time
from pathlib import Path


def default_run_dir(recipe_name: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{recipe_name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{recipe_name}-{stamp}-{n}"
    return path


def list_runs(root: str | Path = "runs") -> list[dict]:
    """One dict per run directory under `root` (newest first), from its summary.json if any."""
    rows = []
    root = Path(root)
    if not root.exists():
        return rows
    for run in root.iterdir():
        if not (run / "config.yaml").exists():
            continue
        summary_path = run / "summary.json"
        status = "incomplete"
        try:
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            summary, status = {}, "unreadable summary.json"
        if not isinstance(summary, dict):
            summary, status = {}, "unreadable summary.json"
        summary = {k: v for k, v in summary.items() if isinstance(v, (str, int, float)) or v is None}
        rows.append({"run": run.name, "path": str(run), "status": summary.get("status", status),
                     "mtime": run.stat().st_mtime, **summary})
    return sorted(rows, key=lambda r: -r["mtime"])


def format_runs(rows: list[dict]) -> str:
    if not rows:
        return "no runs found"
    cols = [("run", "run"), ("status", "status"), ("steps", "steps"), ("epochs", "epochs"),
            ("val_loss", "val_loss"), ("val_accuracy", "val_acc"), ("test_accuracy", "test_acc"),
            ("test_r2", "test_r2"), ("wall_seconds", "seconds")]

    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [[label for _, label in cols]] + [[fmt(r.get(key)) for key, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
