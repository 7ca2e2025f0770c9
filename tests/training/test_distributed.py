"""DDP through torchrun on CPU (gloo): two ranks of batch b equal one process of batch 2b."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
COMMON = ["digits_mlp", "-q", "--set", "trainer.max_epochs=3", "--set", "model.dropout=0.0", "--set", "trainer.early_stopping=null"]


def torchrun_train(args, run_dir, nproc=2):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m"] if nproc > 1 else [sys.executable, "-m"]
    done = subprocess.run([*launcher, "steepest", "train", *args, "--run-dir", str(run_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing to resume" not in done.stderr
    return load_file(run_dir / "model.safetensors")


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> Path:
    """The run both two-rank runs (DDP and FSDP, 2 x 32 samples a micro-batch, 2 micro-batches a step)
    must equal: one process of batch 64, 2 micro-batches a step. Its run directory."""
    run_dir = tmp_path_factory.mktemp("single") / "one"
    torchrun_train([*COMMON, "--set", "data.batch_size=64", "--set", "trainer.accumulate=2"], run_dir, nproc=1)
    return run_dir


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_two_rank_ddp_matches_single_process_with_double_batch(tmp_path, single_process):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "steepest", "train", *COMMON, "--set", "data.batch_size=32",
                          "--set", "trainer.accumulate=2", "--run-dir", str(tmp_path / "ddp")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    a, b = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(single_process / "model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() < 2e-5, key
    # every logged scalar is the global one: the train loss of both ranks' samples, not rank 0's alone
    from steepest.track import read_series

    for metric in ("train_loss", "grad_norm", "val_loss"):
        ddp_series, one_series = read_series(tmp_path / "ddp" / "metrics.db", metric), read_series(single_process / "metrics.db", metric)
        assert [s for s, _ in ddp_series] == [s for s, _ in one_series] and ddp_series, metric
        assert [v for _, v in ddp_series] == pytest.approx([v for _, v in one_series], rel=1e-4), metric


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_two_rank_fsdp_matches_single_process_and_resumes(tmp_path, single_process):
    """FSDP2 on gloo: sharded parameters, gradients and optimizer state give the single-process result
    (batch 2b, accumulation skipping the reduce-scatter on the first micro-batch); the run resumed from
    its full-state checkpoint of epoch 2 (gathered from the shards) ends where the uninterrupted run did,
    the warmup-cosine schedule included. The checkpoint resumed from is the one the uninterrupted run
    wrote at the end of epoch 2 (the same Checkpoint.save a run stopped there writes): a third two-rank
    launch only to write it cost ~20 s."""
    from steepest.training.checkpoint import load_state

    fsdp = [*COMMON, "--set", "trainer.strategy=fsdp", "--set", "data.batch_size=32", "--set", "trainer.accumulate=2",
            "--set", "checkpoint.every_n_epochs=1"]
    whole = torchrun_train(fsdp, tmp_path / "fsdp")
    single = load_file(single_process / "model.safetensors")
    for key in single:
        assert (whole[key] - single[key]).abs().max() < 2e-5, key
    # the run as it stood after epoch 2 (10 optimizer steps an epoch): what came later deleted
    parts = tmp_path / "parts"
    shutil.copytree(tmp_path / "fsdp", parts)
    steps = sorted((parts / "checkpoints").glob("step-*.safetensors"))
    assert [p.name for p in steps] == ["step-00000020.safetensors", "step-00000030.safetensors"]
    steps[-1].unlink()
    for later in ("model.safetensors", "summary.json"):
        (parts / later).unlink()
    first_part = load_state(steps[0])["model"]
    resumed = torchrun_train([*fsdp, "--resume"], parts)
    assert json.loads((parts / "summary.json").read_text())["steps"] == 30
    for key in whole:
        assert (resumed[key] - whole[key]).abs().max() < 1e-6, key
    assert any((first_part[key] - whole[key]).abs().max() > 1e-4 for key in whole)  # the third epoch did train


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun missing")
def test_fsdp_with_an_own_optimizer_restores_the_best_weights(tmp_path):
    """Lion (steepest's own foreach step on sharded DTensors) with early stopping: the best weights are
    gathered from the shards, restored by broadcast at the end, and equal the best checkpoint."""
    import json

    from steepest.training.checkpoint import load_state

    final = torchrun_train(["digits_mlp", "-q", "--set", "trainer.max_epochs=12", "--set", "trainer.strategy=fsdp",
                            "--set", "trainer.early_stopping={monitor: val_loss, patience: 1}",
                            "--set", "optimizer={name: lion, lr: 0.002}"], tmp_path / "lion")
    summary = json.loads((tmp_path / "lion" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("early stopping") and summary["test_accuracy"] > 0.8
    best = load_state(tmp_path / "lion" / "checkpoints" / "best.safetensors")["model"]
    assert all(torch.equal(final[k], best[k]) for k in final)
