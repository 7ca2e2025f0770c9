"""`steepest runs`: every run directory under a folder (nested ones too: compare and search
trials), as rows worth reading, sorted and filtered; and `steepest runs diff A B`.

A row holds: run (its path under the root), date, recipe, data, model, optimizer, lr, status
(completed, or interrupted with the last logged step), the key metrics and the wall time.

    steepest runs --sort=-val_accuracy --where "optimizer = lion" --where "steps >= 100"
"""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from pathlib import Path
from typing import Any

from steepest.config.arguments import RUN_CONFIG
from steepest.config.yaml_io import read_yaml
from steepest.errors import ConfigError, SteepestError, did_you_mean

COLUMNS = [("run", "run"), ("date", "date"), ("recipe", "recipe"), ("data", "data"), ("model", "model"),
           ("optimizer", "optimizer"), ("lr", "lr"), ("status", "status"), ("steps", "steps"), ("val_loss", "val_loss"),
           ("val_metric", "val_acc/r2"), ("test_metric", "test_acc/r2"), ("wall_seconds", "seconds")]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _config(run: Path) -> dict[str, Any]:
    try:
        config = read_yaml(run / RUN_CONFIG)
    except (SteepestError, OSError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _last_step(run: Path) -> int | None:
    try:
        with sqlite3.connect(f"file:{run / 'metrics.db'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT MAX(step) FROM metrics").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None


def _section(config: dict, key: str) -> dict:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def run_status(run: Path, summary: dict | None) -> str:
    """How a run ended, for `steepest runs` and the report: its summary's status, else "unreadable summary.json",
    "interrupted at step N" (the last step logged) or "not started"."""
    if summary is not None:
        return str(summary.get("status", "completed"))
    if (run / "summary.json").exists():
        return "unreadable summary.json"
    step = _last_step(run)
    return f"interrupted at step {step}" if step else "not started"


def run_row(run: Path, root: Path) -> dict[str, Any]:
    config, summary = _config(run), _read_json(run / "summary.json")
    info = _read_json(run / "run.json") or {}
    data, model, optimizer = _section(config, "data"), _section(config, "model"), _section(config, "optimizer")
    status = run_status(run, summary)
    summary = summary if summary is not None else {}
    started = info.get("started") if isinstance(info.get("started"), str) else None
    date = started[:16].replace("T", " ") if started else time.strftime("%Y-%m-%d %H:%M", time.localtime(run.stat().st_mtime))
    metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {
        "run": str(run.relative_to(root)) if run != root else run.name,
        "path": str(run),
        "date": date,
        "recipe": config.get("name"),
        "data": data.get("name") or data.get("path") or data.get("component"),
        "model": model.get("name") or model.get("component"),
        "optimizer": optimizer.get("name") or optimizer.get("component"),
        "lr": optimizer.get("lr"),
        "status": status,
        "val_metric": metrics.get("val_accuracy", metrics.get("val_r2")),
        "test_metric": metrics.get("test_accuracy", metrics.get("test_r2")),
        **metrics,
    }


def list_runs(root: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run directory (a folder holding config.yaml) under `root`, at any depth, newest first."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"runs --root {root}: no such folder; give the folder holding the run directories (default runs, "
                          "where `steepest train` writes them)")
    if not root.is_dir():
        raise ConfigError(f"runs --root {root}: a file, not a folder; give the folder holding the run directories")
    runs = sorted({p.parent for p in root.rglob(RUN_CONFIG) if p.is_file()})
    rows = [run_row(run, root) for run in runs]
    return sorted(rows, key=lambda r: r["date"], reverse=True)


_OPS = [("<=", operator.le), (">=", operator.ge), ("!=", operator.ne), ("=", operator.eq), ("<", operator.lt),
        (">", operator.gt), ("~", lambda a, b: str(b).lower() in str(a).lower())]


_OP_CHARS = "<>=!~"
_WHERE_HELP = "KEY OP VALUE (OP: = != < > <= >= ~), e.g. \"val_accuracy > 0.9\""


def parse_where(text: str):
    """'KEY OP VALUE' (OP one of = != < > <= >= ~; ~ is "contains") -> a row predicate; its
    `.key` is KEY. ConfigError for anything else ("steps >> 3", "lr =", "= 3")."""
    for symbol, op in _OPS:
        key, sep, value = text.partition(symbol)
        if sep and key.strip():
            key, value = key.strip(), value.strip()
            if not value or value[0] in _OP_CHARS or key[-1] in _OP_CHARS:
                raise ConfigError(f"runs --where: '{text}' is not {_WHERE_HELP}")
            try:
                number = float(value)
            except ValueError:
                number = None

            def keep(row, key=key, value=value, number=number, op=op, symbol=symbol):
                have = row.get(key)
                if have is None:
                    return False
                if number is not None and isinstance(have, (int, float)) and symbol != "~":
                    return op(float(have), number)
                if isinstance(have, (int, float)) and not isinstance(have, bool) and symbol not in ("=", "!=", "~"):
                    raise ConfigError(f"runs --where: {key} is a number; compare it with a number, not {value!r}")
                return op(str(have), value)  # text in order (ISO dates sort as they read), or = != ~

            keep.key = key
            return keep
    raise ConfigError(f"runs --where: '{text}' is not {_WHERE_HELP}")


def _check_key(key: str, rows: list[dict], option: str) -> None:
    """ConfigError when no row has `key` (a typo would otherwise filter out every run, or sort none),
    listing the keys the rows have. Nothing to check without rows."""
    known = {k for r in rows for k in r}
    if rows and key not in known:
        names = [k for k, _ in COLUMNS if k in known] + sorted(known - {k for k, _ in COLUMNS})
        raise ConfigError(f"runs {option}: no run has '{key}';{did_you_mean(key, known)} available: {', '.join(names)}")


def select(rows: list[dict], where: list[str], sort: str | None) -> list[dict]:
    """The rows that every `where` clause keeps, sorted by `sort` ("key" or "-key", descending; rows
    without the key last). ConfigError for a malformed clause or a key no row has."""
    everything = rows
    for clause in where:
        keep = parse_where(clause)
        _check_key(keep.key, everything, "--where")
        rows = [r for r in rows if keep(r)]
    if sort is not None:
        key, reverse = sort.lstrip("-"), sort.startswith("-")
        if not key.strip():
            raise ConfigError(f"runs --sort: '{sort}' names no column; give --sort KEY or --sort=-KEY (descending)")
        _check_key(key, everything, "--sort")
        present = [r for r in rows if r.get(key) is not None]
        missing = [r for r in rows if r.get(key) is None]
        try:
            present.sort(key=lambda r: r[key], reverse=reverse)
        except TypeError:
            present.sort(key=lambda r: str(r[key]), reverse=reverse)
        rows = present + missing
    return rows


def format_runs(rows: list[dict]) -> str:
    if not rows:
        return "no runs found"

    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [[label for _, label in COLUMNS]] + [[fmt(r.get(key)) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: config}


def recipe_diff(a: str | Path, b: str | Path) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in A, value in B) for every key whose value differs between the recipes
    of two runs (or two recipe files); a key missing on one side shows as None there."""
    configs = []
    for path in (Path(a), Path(b)):
        file = path / RUN_CONFIG if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"{path} is neither a run directory (with {RUN_CONFIG}) nor a recipe file")
        config = read_yaml(file)
        configs.append(_flatten(config if isinstance(config, dict) else {}))
    left, right = configs
    return [(k, left.get(k), right.get(k)) for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]


def format_diff(diff: list[tuple[str, Any, Any]], a: str, b: str) -> str:
    if not diff:
        return "the two recipes are the same"
    width = max(len(k) for k, _, _ in diff)
    lines = [f"{'key':<{width}}  {a}  ->  {b}"]
    lines += [f"{k:<{width}}  {json.dumps(x)}  ->  {json.dumps(y)}" for k, x, y in diff]
    return "\n".join(lines)
