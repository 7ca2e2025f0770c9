"""torchrun runs of the scripts in scripts/ (own steps of LAMB/LARS/NovoGrad over FSDP shards in
float64; a stop asked on one rank), apart from test_distributed.py so that the two files' torchrun
launches can run on different test workers. Both checks share one launch (scripts/two_rank_checks.py):
each launch costs ~10 s of imports before a step is trained. The run reads digits from an .npz of the
arrays `data.name=digits` loads, so that no rank imports scikit-learn (~3-7 s each, both at once)."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).with_name("scripts")
TORCHRUN = Path(sys.executable).with_name("torchrun")

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and not TORCHRUN.exists(), reason="torchrun missing")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One torchrun launch (2 ranks, gloo) of stop_on_one_rank.py's run, then fsdp_float64.py's
    optimizers sharded by FSDP2: (its output folder, the finished launch)."""
    from sklearn.datasets import load_digits

    out = tmp_path_factory.mktemp("two_ranks")
    digits = load_digits()  # float32 pixels and int64 labels, as `data.name=digits` reads them
    np.savez(out / "digits.npz", x=digits.data.astype(np.float32), y=digits.target.astype(np.int64))
    launch = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(SCRIPTS / "two_rank_checks.py"), str(out), str(out / "digits.npz")]
    done = subprocess.run(launch, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    return out, done


def test_fsdp_trust_ratio_optimizers_equal_one_process_in_float64(tmp_path, two_ranks, monkeypatch):
    """LAMB/LARS/NovoGrad norms over sharded DTensors are the full tensors' norms: in float64 the
    sharded run equals the single process to rounding (in float32 LAMB amplifies rounding to ~1e-3).
    The single process is fsdp_float64.py run here (no WORLD_SIZE: no process group), with one torch
    thread as each rank has; its weights are bit-identical to a `python fsdp_float64.py` process's."""
    out, done = two_ranks
    names = ("lamb", "lars", "lion", "novograd", "adamw")
    assert all((out / f"{name}_2.safetensors").exists() for name in names), done.stderr[-3000:]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / "fsdp_float64.py"), str(tmp_path)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # the script seeds torch's global generator
            runpy.run_path(str(SCRIPTS / "fsdp_float64.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    for name in names:
        one, two = load_file(tmp_path / f"{name}_1.safetensors"), load_file(out / f"{name}_2.safetensors")
        assert all((one[k] - two[k]).abs().max() < 1e-12 for k in one), name


def test_a_stop_asked_on_one_rank_is_agreed_at_the_next_log_step_only(two_ranks):
    """No per-step all-reduce for stopping: rank 1's request at step 3 stops both ranks at step 5 (the
    next log step), with rank 1's reason, after two agreements (step 5 and the end of training)."""
    out, done = two_ranks
    assert all((out / f"rank{r}.json").exists() for r in (0, 1)), done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps_per_epoch"] > 5  # no epoch end before the log step
    for r in ranks:
        assert r["step"] == 5 and r["reason"] == "rank 1 asked at step 3", r
        assert r["agreements"] == 2, r
