"""torchrun runs of the scripts in scripts/ (own steps of LAMB/LARS/NovoGrad over FSDP shards in
float64; a stop asked on one rank), apart from test_distributed.py so that the two files' torchrun
launches can run on different test workers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_fsdp_trust_ratio_optimizers_equal_one_process_in_float64(tmp_path):
    """LAMB/LARS/NovoGrad norms over sharded DTensors are the full tensors' norms: in float64 the
    sharded run equals the single process to rounding (in float32 LAMB amplifies rounding to ~1e-3)."""
    script = str(Path(__file__).with_name("scripts") / "fsdp_float64.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    for launcher in ([sys.executable], [torchrun, "--standalone", "--nproc_per_node=2"]):
        done = subprocess.run([*launcher, script, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for name in ("lamb", "lars", "lion", "novograd", "adamw"):
        one, two = load_file(tmp_path / f"{name}_1.safetensors"), load_file(tmp_path / f"{name}_2.safetensors")
        assert all((one[k] - two[k]).abs().max() < 1e-12 for k in one), name


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_a_stop_asked_on_one_rank_is_agreed_at_the_next_log_step_only(tmp_path):
    """No per-step all-reduce for stopping: rank 1's request at step 3 stops both ranks at step 5 (the
    next log step), with rank 1's reason, after two agreements (step 5 and the end of training)."""
    script = str(Path(__file__).with_name("scripts") / "stop_on_one_rank.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", script, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps_per_epoch"] > 5  # no epoch end before the log step
    for r in ranks:
        assert r["step"] == 5 and r["reason"] == "rank 1 asked at step 3", r
        assert r["agreements"] == 2, r
