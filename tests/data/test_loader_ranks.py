"""Two ranks x two DataLoader workers (torchrun, gloo, CPU): every sample is trained on exactly once per
epoch, for map-style and iterable data, and the weights equal one process with the double batch."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("scripts") / "loader_ranks.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(shutil.which("torchrun") is None and not TORCHRUN.exists(), reason="torchrun missing")
def test_two_ranks_two_workers_see_each_sample_once_and_equal_one_process(tmp_path, monkeypatch):
    """The one process (batch 32) is the script's `run` called here, without RANK/WORLD_SIZE, with one
    torch thread as each rank has: its weights are bit-identical to a `python loader_ranks.py` process's
    (its DataLoader workers fork from this process, as they do from the script's)."""
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(SCRIPT), str(tmp_path), "16"], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # the script seeds torch's global generator
            runpy.run_path(str(SCRIPT))["run"](str(tmp_path), 32)
    finally:
        torch.set_num_threads(threads)
    for name in ("map", "stream"):
        per_rank = [json.loads((tmp_path / f"{name}-seen-2-{r}.json").read_text()) for r in (0, 1)]
        assert set(map(tuple, per_rank[0])).isdisjoint(map(tuple, per_rank[1])), name  # no sample on both ranks
        for epoch in (0, 1):
            counts = Counter(i for seen in per_rank for e, i in seen if e == epoch)
            assert sorted(counts) == list(range(96)) and set(counts.values()) == {1}, (name, epoch)
        two, one = load_file(tmp_path / f"{name}-2.safetensors"), load_file(tmp_path / f"{name}-1.safetensors")
        assert two.keys() == one.keys()
        for key in one:
            assert one[key].dtype == torch.float64
            assert (two[key] - one[key]).abs().max() < 1e-6, (name, key)
        assert any((one[k] - load_file(tmp_path / f"{'stream' if name == 'map' else 'map'}-1.safetensors")[k]).abs().max() > 1e-3 for k in one)
