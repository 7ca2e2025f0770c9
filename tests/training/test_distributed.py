"""DDP through torchrun on CPU (gloo): two ranks of batch b equal one process of batch 2b.

The module's two-rank runs (DDP, FSDP, FSDP resumed, FSDP with Lion) share one torchrun launch
(`two_rank_runs`, scripts/two_rank_trains.py): each launch costs ~10 s of imports (torch in the
launcher and in each rank, then torch._dynamo in each rank) before a step is trained, and each run in
it still creates its process group and destroys it at its end. The single-process reference runs in
this process (`steepest.cli.main`, what `python -m steepest` calls). Every run reads digits from an
.npz of the arrays `data.name=digits` loads (`digits`; the same runs to the bit), so that no rank
imports scikit-learn (~3-7 s each, both at once)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
COMMON = ["digits_mlp", "-q", "--set", "trainer.max_epochs=3", "--set", "model.dropout=0.0", "--set", "trainer.early_stopping=null"]
FSDP = [*COMMON, "--set", "trainer.strategy=fsdp", "--set", "data.batch_size=32", "--set", "trainer.accumulate=2",
        "--set", "checkpoint.every_n_epochs=1"]
# the uninterrupted FSDP run as it stood after epoch 2 (10 optimizer steps an epoch): what came later deleted
LATER = ["checkpoints/step-00000030.safetensors", "model.safetensors", "summary.json"]

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and not TORCHRUN.exists(), reason="torchrun missing")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> list[str]:
    """The --set arguments that read scikit-learn's digits from an .npz: the arrays `data.name=digits`
    reads (float32 pixels, int64 labels), split and normalized alike."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x=bunch.data.astype(np.float32), y=bunch.target.astype(np.int64))
    return ["--set", "data.name=null", "--set", "data.format=npz", "--set", f"data.path={path}"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, digits) -> Path:
    """The run both two-rank runs (DDP and FSDP, 2 x 32 samples a micro-batch, 2 micro-batches a step)
    must equal: one process of batch 64, 2 micro-batches a step. Its run directory. Trained here, with
    one torch thread as each rank has (OMP_NUM_THREADS=1)."""
    from steepest.cli import main

    run_dir = tmp_path_factory.mktemp("single") / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *COMMON, *digits, "--set", "data.batch_size=64", "--set", "trainer.accumulate=2",
                     "--run-dir", str(run_dir)]) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory, digits):
    """One torchrun launch (2 ranks) of every two-rank run of the module, in order: DDP; FSDP with a
    checkpoint each epoch; that run's directory as it stood after epoch 2, resumed; FSDP with Lion
    and early stopping. Returns (folder of the run directories, the finished launch)."""
    out = tmp_path_factory.mktemp("two_ranks")
    steps = [["train", "ddp", *COMMON, *digits, "--set", "data.batch_size=32", "--set", "trainer.accumulate=2", "--run-dir", str(out / "ddp")],
             ["train", "fsdp", *FSDP, *digits, "--run-dir", str(out / "fsdp")],
             ["copy", str(out / "fsdp"), str(out / "parts"), *LATER],
             ["train", "resumed", *FSDP, *digits, "--resume", "--run-dir", str(out / "parts")],
             ["train", "lion", "digits_mlp", "-q", *digits, "--set", "trainer.max_epochs=12", "--set", "trainer.strategy=fsdp",
              "--set", "trainer.early_stopping={monitor: val_loss, patience: 1}", "--set", "optimizer={name: lion, lr: 0.002}",
              "--run-dir", str(out / "lion")]]
    script = Path(__file__).with_name("scripts") / "two_rank_trains.py"
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(out), json.dumps(steps)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    return out, done


def finished(two_rank_runs, *names) -> Path:
    """The launch's folder, once the named runs ended with status 0 on both ranks."""
    out, done = two_rank_runs
    for name in names:
        codes = [(out / f"{name}.rank{r}").read_text() if (out / f"{name}.rank{r}").exists() else None for r in (0, 1)]
        assert codes == ["0", "0"], (name, codes, done.stderr[-3000:])
    return out


def test_two_rank_ddp_matches_single_process_with_double_batch(two_rank_runs, single_process):
    out = finished(two_rank_runs, "ddp")
    a, b = load_file(out / "ddp" / "model.safetensors"), load_file(single_process / "model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() < 2e-5, key
    # every logged scalar is the global one: the train loss of both ranks' samples, not rank 0's alone
    from steepest.track import read_series

    for metric in ("train_loss", "grad_norm", "val_loss"):
        ddp_series, one_series = read_series(out / "ddp" / "metrics.db", metric), read_series(single_process / "metrics.db", metric)
        assert [s for s, _ in ddp_series] == [s for s, _ in one_series] and ddp_series, metric
        assert [v for _, v in ddp_series] == pytest.approx([v for _, v in one_series], rel=1e-4), metric


def test_two_rank_fsdp_matches_single_process_and_resumes(two_rank_runs, single_process):
    """FSDP2 on gloo: sharded parameters, gradients and optimizer state give the single-process result
    (batch 2b, accumulation skipping the reduce-scatter on the first micro-batch); the run resumed from
    its full-state checkpoint of epoch 2 (gathered from the shards) ends where the uninterrupted run did,
    the warmup-cosine schedule included. The checkpoint resumed from is the one the uninterrupted run
    wrote at the end of epoch 2 (the same Checkpoint.save a run stopped there writes): a third two-rank
    launch only to write it cost ~20 s. The resumed run is a later run of the same launch: it builds its
    model, optimizer, schedule and data from the recipe, and restores the rest from that checkpoint."""
    from steepest.training.checkpoint import load_state

    out = finished(two_rank_runs, "fsdp", "resumed")
    assert "nothing to resume" not in two_rank_runs[1].stderr
    whole = load_file(out / "fsdp" / "model.safetensors")
    single = load_file(single_process / "model.safetensors")
    for key in single:
        assert (whole[key] - single[key]).abs().max() < 2e-5, key
    steps = sorted((out / "fsdp" / "checkpoints").glob("step-*.safetensors"))
    assert [p.name for p in steps] == ["step-00000020.safetensors", "step-00000030.safetensors"]  # the copy resumed lacks step 30
    first_part = load_state(steps[0])["model"]
    resumed = load_file(out / "parts" / "model.safetensors")
    assert json.loads((out / "parts" / "summary.json").read_text())["steps"] == 30
    for key in whole:
        assert (resumed[key] - whole[key]).abs().max() < 1e-6, key
    assert any((first_part[key] - whole[key]).abs().max() > 1e-4 for key in whole)  # the third epoch did train


def test_fsdp_with_an_own_optimizer_restores_the_best_weights(two_rank_runs):
    """Lion (steepest's own foreach step on sharded DTensors) with early stopping: the best weights are
    gathered from the shards, restored by broadcast at the end, and equal the best checkpoint."""
    from steepest.training.checkpoint import load_state

    out = finished(two_rank_runs, "lion")
    final = load_file(out / "lion" / "model.safetensors")
    summary = json.loads((out / "lion" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("early stopping") and summary["test_accuracy"] > 0.8
    best = load_state(out / "lion" / "checkpoints" / "best.safetensors")["model"]
    assert all(torch.equal(final[k], best[k]) for k in final)
