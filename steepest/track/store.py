"""Metrics in an embedded SQLite database: one row per logged scalar, with step and wall time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from steepest.errors import CheckpointError

SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    wall_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_name_step ON metrics(name, step);
"""


class MetricStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        try:
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise CheckpointError(f"{self.path} is not a metrics database ({exc}); delete it or use a new run directory") from None
        self._pending: list[tuple[int, str, float, float]] = []

    def log(self, step: int, values: dict[str, float]) -> None:
        now = time.time()
        self._pending += [(int(step), k, float(v), now) for k, v in values.items()]

    def flush(self) -> None:
        if self._pending:
            with self.db:
                self.db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", self._pending)
            self._pending.clear()

    def truncate_after(self, step: int) -> None:
        """Forget rows logged after `step` (a resumed run logs those steps again)."""
        with self.db:
            self.db.execute("DELETE FROM metrics WHERE step > ?", (int(step),))

    def series(self, name: str) -> list[tuple[int, float]]:
        self.flush()
        return list(self.db.execute("SELECT step, value FROM metrics WHERE name = ? ORDER BY step, rowid", (name,)))

    def names(self) -> list[str]:
        self.flush()
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics ORDER BY name")]

    def close(self) -> None:
        self.flush()
        self.db.close()


def read_series(db_path: str | Path, name: str) -> list[tuple[int, float]]:
    """(step, value) rows of one metric; CheckpointError when the file is not a metrics database."""
    if not Path(db_path).is_file():
        raise CheckpointError(f"{db_path} does not exist; give a run directory written by steepest train")
    try:
        with sqlite3.connect(db_path) as db:
            return list(db.execute("SELECT step, value FROM metrics WHERE name = ? ORDER BY step, rowid", (name,)))
    except sqlite3.DatabaseError as exc:
        raise CheckpointError(f"{db_path} is not a metrics database ({exc})") from None
