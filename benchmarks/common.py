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


def cpu_details() -> str:
    """What tells two CPUs sold under one name apart (cloud VMs report "AMD EPYC" for Zen 2 to 4):
    family/model, torch's vector ISA (AVX2, AVX512: bf16 matmuls are far slower without AVX-512
    BF16) and the L2 cache per core."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
            if len(fields) == 2:
                break
    except OSError:
        pass
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an old torch
        isa = "?"
    from steepest.optim.base import l2_cache_bytes

    l2 = l2_cache_bytes()
    family = f"family {fields['cpu family']} model {fields['model']}, " if len(fields) == 2 else ""
    return f"{family}{isa}, L2 {l2 // 1024 if l2 else '?'} KiB/core"


def header(device: torch.device) -> str:
    cpu = f" [{cpu_details()}]" if device.type == "cpu" else ""
    return (f"device: {device_name(device)}{cpu}; torch {torch.__version__}; python {platform.python_version()}; "
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
