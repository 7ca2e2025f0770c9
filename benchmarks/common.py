"""Shared helpers for benchmarks: device description, timing, result files."""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def header(device: torch.device) -> str:
    return (f"device: {device_name(device)}; torch {torch.__version__}; python {platform.python_version()}; "
            f"date {datetime.date.today().isoformat()}")


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds for one call of fn, with CUDA events on a GPU and perf_counter on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


def report(lines: list[str], out: str | None) -> None:
    """Print a result table and, with `out`, write it under benchmarks/results/."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        print("written to", write_result(out, text))
