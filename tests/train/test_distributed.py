"""DDP through torchrun on CPU (gloo): two ranks of batch b equal one process of batch 2b."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
COMMON = ["digits_mlp", "-q", "--set", "trainer.max_epochs=3", "--set", "model.dropout=0.0", "--set", "trainer.early_stopping=null"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_two_rank_ddp_matches_single_process_with_double_batch(tmp_path):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "steepest", "train", *COMMON, "--set", "data.batch_size=32",
                          "--set", "trainer.accumulate=2", "--run-dir", str(tmp_path / "ddp")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "steepest", "train", *COMMON, "--set", "data.batch_size=64", "--set", "trainer.accumulate=2",
                             "--run-dir", str(tmp_path / "one")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() < 2e-5, key
