"""Run tracking: the SQLite metric store and run directories."""

from steepest.track.runs import default_run_dir
from steepest.track.store import MetricStore, read_series

__all__ = ["MetricStore", "default_run_dir", "read_series"]
