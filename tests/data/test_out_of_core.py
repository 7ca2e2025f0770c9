"""Out-of-core training (issue 12, "Any data, any size"): `data: {format: memmap}` reads .npy arrays
memory-mapped from disk a micro-batch at a time. A training set larger than 1 GB trains one epoch
through `steepest train` with the anonymous memory (RssAnon: pages of the mapped file are not
counted, they belong to the page cache) of the trainer and its DataLoader workers together below
1 GB; the batches are those of the in-memory path; bad folders are one-line errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import DeviceLoader, load_data
from steepest.data.arrays import MemmapArrays, Row, collate_rows, read_memmap
from steepest.data.normalize import Standardizer
from steepest.data.stream import SampleLoader
from steepest.errors import DataError

REPO = Path(__file__).resolve().parents[2]
GB = 1e9


def small_folder(root: Path, n: int = 300, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x.npy (n, features) float32 and y.npy (n,) int64 labels (3 classes from a rule on x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, (n, features)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.int64)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    return x, y


def recipe_file(tmp_path: Path, folder: Path, **data) -> Path:
    keys = {"format": "memmap", "path": str(folder), "batch_size": 32, **data}
    text = (f"data: {json.dumps(keys)}\nmodel: {{name: mlp, hidden: [16]}}\noptimizer: {{name: adamw, lr: 1.0e-2}}\n"
            "trainer: {max_epochs: 1, seed: 0, progress: 'off'}\ncheckpoint: {enabled: false}\n")
    path = tmp_path / "memmap.yaml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- fast tests


def test_getitems_returns_the_rows_of_indexing(tmp_path):
    x, y = small_folder(tmp_path / "d")
    index = np.array([5, 9, 2, 250, 7, 2])  # a split's rows, one repeated
    norm = Standardizer(tuple(x.mean(0).tolist()), tuple(x.std(0).tolist()))
    data = MemmapArrays(tmp_path / "d" / "x.npy", tmp_path / "d" / "y.npy", index, norm)
    asked = [3, 0, 5, 2, 2, 1]
    rows = data.__getitems__(asked)
    assert len(rows) == len(asked) and all(isinstance(r, Row) for r in rows)
    for position, row in zip(asked, rows):
        single_x, single_y = data[position]
        row_x, row_y = row
        assert torch.equal(row_x, single_x) and torch.equal(row_y, single_y)
        expected = (x[index[position]] - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
        np.testing.assert_allclose(single_x.numpy(), expected, rtol=1e-6, atol=1e-6)
        assert int(single_y) == y[index[position]]
    bx, by = torch.utils.data.default_collate(rows)  # the default collate stacks them through collate_rows
    assert bx.shape == (6, 6) and bx.dtype == torch.float32 and by.dtype == torch.int64
    assert torch.equal(bx, torch.stack([data[i][0] for i in asked])) and by.tolist() == [int(y[index[i]]) for i in asked]
    mixed = collate_rows([*data.__getitems__([0, 1]), *data.__getitems__([4])])  # rows of two gathers: stacked one by one
    assert torch.equal(mixed[0], torch.stack([data[i][0] for i in (0, 1, 4)]))
    with pytest.raises(IndexError):
        data.__getitems__([6])


def test_pickled_dataset_reopens_the_files_and_holds_no_data(tmp_path):
    import pickle

    small_folder(tmp_path / "d", n=2000, features=64)
    data = MemmapArrays(tmp_path / "d" / "x.npy", tmp_path / "d" / "y.npy", np.arange(10, 20))
    data[0]  # maps the files in this process
    blob = pickle.dumps(data)
    assert len(blob) < 2000  # the paths and the index, not the 512 kB of x
    again = pickle.loads(blob)
    assert torch.equal(again[3][0], data[3][0])


@pytest.mark.parametrize("workers", [0, 2])
def test_memmap_batches_are_the_in_memory_batches(tmp_path, workers):
    """The recipe's memmap splits, through SampleLoader (workers or not), give the batches that
    DeviceLoader gives over the same split in memory, standardized with the same statistics."""
    x, y = small_folder(tmp_path / "d", n=300)
    cfg = load_recipe(str(recipe_file(tmp_path, tmp_path / "d"))).data
    bundle = load_data(cfg)
    train = bundle.train.dataset
    assert isinstance(train, MemmapArrays) and len(train) == bundle.info.sizes["train"]
    norm = Standardizer.from_dict(bundle.info.x_norm)
    xs = torch.from_numpy(norm.transform(x[train.index]))
    ys = torch.from_numpy(y[train.index])
    assert torch.equal(bundle.train.y, ys)
    fast = DeviceLoader(xs, ys, 32, seed=4)
    streamed = SampleLoader(train, 32, seed=4, num_workers=workers)
    for epoch in (0, 1):
        pairs = list(zip(fast.batches(epoch), streamed.batches(epoch), strict=True))
        assert len(pairs) == math.ceil(len(train) / 32)
        for (fx, fy), (sx, sy) in pairs:
            assert torch.equal(fy, sy)
            torch.testing.assert_close(sx, fx, rtol=1e-5, atol=1e-5)


def test_splits_info_and_options(tmp_path):
    x, y = small_folder(tmp_path / "d", n=400)
    bundle = load_data(load_recipe(str(recipe_file(tmp_path, tmp_path / "d", split=[0.5, 0.25, 0.25], normalize="none"))).data)
    info = bundle.info
    assert info.task == "classification" and info.num_classes == 3 and info.input_shape == (6,) and info.x_norm is None
    assert info.sizes == {"train": 200, "val": 100, "test": 100}
    every = np.concatenate([bundle.train.dataset.index, bundle.val.dataset.index, bundle.test.dataset.index])
    assert sorted(every.tolist()) == list(range(400))  # index sets over the file, nothing copied
    assert torch.equal(bundle.val.dataset[0][0], torch.from_numpy(x[bundle.val.dataset.index[0]]))  # as stored
    # an official test split; regression targets standardized; class selection relabelled per batch
    np.save(tmp_path / "d" / "x_test.npy", x[:50])
    np.save(tmp_path / "d" / "y_test.npy", y[:50])
    bundle = load_data(load_recipe(str(recipe_file(tmp_path, tmp_path / "d", classes=[2, 0]))).data)
    assert bundle.info.num_classes == 2 and len(bundle.test) == int(np.isin(y[:50], [2, 0]).sum())
    assert set(bundle.train.y.tolist()) == {0, 1} and bundle.test.dataset.x_path.endswith("x_test.npy")
    _, ty = collate_rows(bundle.test.dataset.__getitems__(list(range(len(bundle.test)))))
    assert ty.tolist() == [{2: 0, 0: 1}[int(v)] for v in y[:50] if v in (2, 0)]
    np.save(tmp_path / "d" / "y.npy", x[:, 0] * 1.5)
    (tmp_path / "d" / "x_test.npy").unlink()
    (tmp_path / "d" / "y_test.npy").unlink()
    bundle = load_data(load_recipe(str(recipe_file(tmp_path, tmp_path / "d", balance="none"))).data)
    assert bundle.info.task == "regression" and bundle.info.num_outputs == 1 and bundle.info.y_norm is not None
    assert bundle.train.y.shape == (len(bundle.train), 1) and abs(float(bundle.train.y.mean())) < 1e-5


def test_a_memmap_recipe_trains_in_process(tmp_path):
    small_folder(tmp_path / "d", n=600)
    recipe = recipe_file(tmp_path, tmp_path / "d", num_workers=1)
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1 and math.isfinite(summary["val_loss"]) and "test_accuracy" in summary
    assert main(["validate", str(recipe)]) == 0


def bad(tmp_path: Path, capsys, **data) -> str:
    recipe = recipe_file(tmp_path, tmp_path / "d", **data)
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    err = bad(tmp_path, capsys)
    assert "x.npy: no such file" in err and "data.options" in err
    x, y = small_folder(tmp_path / "d", n=50)
    np.save(tmp_path / "d" / "y.npy", y[:40])
    err = bad(tmp_path, capsys)
    assert "y.npy: 40 rows but x.npy has 50" in err
    np.save(tmp_path / "d" / "y.npy", y)
    np.save(tmp_path / "d" / "x.npy", np.array([["a"] * 3] * 50))
    assert "x.npy: dtype <U1 is not numeric" in bad(tmp_path, capsys)
    (tmp_path / "d" / "x.npy").write_bytes(b"not an array")
    assert "cannot memory-map" in bad(tmp_path, capsys)
    np.save(tmp_path / "d" / "x.npy", np.asfortranarray(x))
    assert "Fortran" in bad(tmp_path, capsys)
    x[7, 2] = np.nan
    np.save(tmp_path / "d" / "x.npy", x)
    assert "x.npy: row 7 holds NaN" in bad(tmp_path, capsys)
    np.save(tmp_path / "d" / "x.npy", np.nan_to_num(x))
    assert "balance: sampler" in bad(tmp_path, capsys, balance="smote")
    np.save(tmp_path / "d" / "x_test.npy", x[:5])
    assert "x_test.npy: found without y_test.npy" in bad(tmp_path, capsys)
    recipe = recipe_file(tmp_path, tmp_path / "d", options={"x_file": "a.npy"})
    assert main(["validate", str(recipe)]) == 2 and "x_file" in capsys.readouterr().err
    with pytest.raises(DataError, match="does not exist"):
        read_memmap(tmp_path / "nowhere")


# --------------------------------------------------------------------------- out of core

ROWS, FEATURES, CLASSES = 290_000, 1024, 10  # x.npy: 290,000 x 1024 float32 = 1.19 GB, above LIMIT
# 35 steps of 8192 rows (32 MiB) through a linear classifier (the labels are a linear rule). The peak
# anonymous memory does not grow with the file (it is the processes' own: torch in the trainer, two
# workers, a few 32 MiB batches in flight): at 530,000 rows (2.17 GB) it measured 654-662 MiB too, and
# that size cost the suite twice the time (50 s), so the file is only as large as it must be to exceed
# the limit that holds the processes' memory.
BATCH = 8192
LIMIT = 1 * GB  # RssAnon of the trainer and its workers together
# Two workers started by forkserver: a forked worker's RssAnon would count, besides its own batch,
# every anonymous page it shares copy-on-write with the trainer (~0.25-0.35 GB: torch, torch._dynamo
# and sympy that the optimizer imports), and with two forked workers the sum measured 0.91-1.07 GB;
# forkserver workers start from a clean process (~0.19 GB each).
WORKERS = 2


def write_large_folder(folder: Path, chunk: int = 16_384) -> int:
    """x.npy (ROWS, FEATURES) float32 uniform in [0, 1), written chunk by chunk after the header
    numpy's open_memmap writes (never in memory whole; plain writes, not page faults on a mapping),
    and y.npy (ROWS,) int64: the argmax of a fixed random linear map of the centred row (learnable).
    Returns x.npy's size in bytes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    header = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(ROWS, FEATURES))
    offset = header.offset
    del header
    y = np.empty(ROWS, dtype=np.int64)
    with open(folder / "x.npy", "r+b") as f:
        f.seek(offset)
        for start in range(0, ROWS, chunk):
            block = rng.random((min(chunk, ROWS - start), FEATURES), dtype=np.float32)
            y[start : start + len(block)] = np.argmax((block - 0.5) @ w, axis=1)
            f.write(block.data)
    np.save(folder / "y.npy", y)
    return (folder / "x.npy").stat().st_size


def rss_anon(pid: int) -> int:
    """Resident anonymous memory of a process in bytes (0 when it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed RssAnon of a process and all its descendants every `every` seconds;
    keeps the peak sum and the per-process figures at the peak."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.peak, self.at_peak, self.most_processes, self.samples = 0, [], 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                pids = [self.root.pid, *(c.pid for c in self.root.children(recursive=True))]
            except psutil.NoSuchProcess:
                return
            each = [rss_anon(pid) for pid in pids]
            if sum(each) > self.peak:
                self.peak, self.at_peak = sum(each), each
            self.most_processes = max(self.most_processes, len(pids))
            self.samples += 1
            self.done.wait(self.every)


def steady_throughput(run_dir: Path) -> float:
    """Training rows per second between the first and the last logged step (metrics.db wall times)."""
    import sqlite3

    with sqlite3.connect(run_dir / "metrics.db") as db:
        rows = db.execute("SELECT step, wall_time FROM metrics WHERE name = 'train_loss' ORDER BY step").fetchall()
    (s0, t0), (s1, t1) = rows[0], rows[-1]
    return (s1 - s0) * BATCH / (t1 - t0)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux)")
def test_a_training_set_larger_than_memory_trains_with_bounded_anonymous_memory(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    if free < 2 * GB:
        pytest.skip(f"needs 2 GB free under {tmp_path}, has {free / GB:.1f} GB")
    started = time.perf_counter()
    folder = tmp_path / "big"
    try:
        size = write_large_folder(folder)
        assert size > LIMIT  # the file alone would not fit in the anonymous memory allowed
        written = time.perf_counter()
        recipe = tmp_path / "big.yaml"
        recipe.write_text(f"""
data: {{format: memmap, path: {folder}, batch_size: {BATCH}, num_workers: {WORKERS}, multiprocessing_context: forkserver,
       split: [0.98, 0.01, 0.01]}}
model: {{name: mlp, hidden: []}}
optimizer: {{name: adamw, lr: 3.0e-3}}
trainer: {{max_epochs: 1, seed: 0, progress: 'off'}}
checkpoint: {{enabled: false}}
""")
        run_dir = tmp_path / "run"
        process = subprocess.Popen([sys.executable, "-m", "steepest", "train", str(recipe), "--run-dir", str(run_dir), "-q"],
                                   cwd=REPO, env={**os.environ, "STEEPEST_NO_REPORT": "1"}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        memory = TreeMemory(process.pid)
        memory.start()
        try:
            output, _ = process.communicate(timeout=600)
        finally:
            memory.done.set()
            memory.join()
            if process.poll() is None:
                process.kill()
        trained = time.perf_counter()
        assert process.returncode == 0, output[-3000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        n_train = json.loads((run_dir / "data_info.json").read_text())["sizes"]["train"]
        print(f"\nx.npy {size / GB:.2f} GB written in {written - started:.1f} s; `steepest train` {trained - written:.1f} s "
              f"(run {summary['wall_seconds']:.1f} s), training {steady_throughput(run_dir):,.0f} rows/s; peak RssAnon "
              f"{memory.peak / 2**20:,.0f} MiB = {' + '.join(f'{m / 2**20:.0f}' for m in memory.at_peak)} "
              f"({memory.samples} samples); val_accuracy {summary['val_accuracy']:.3f}")
        assert summary["epochs"] == 1 and summary["steps"] == math.ceil(n_train / BATCH) and n_train > 0.97 * ROWS
        assert math.isfinite(summary["val_loss"]) and math.isfinite(summary["test_loss"])
        # it learned something in one pass (chance: 0.1). Measured at 290,000 rows (trainer seed 0):
        # val_accuracy 0.819, peak RssAnon 634 MiB (252 + two workers 184 each); at 530,000 rows (seeds
        # 0-4): 0.887-0.901, 654-662 MiB (trainer ~272 + two workers 186 each)
        assert summary["val_accuracy"] > 2 / CLASSES
        assert memory.samples > 10 and memory.most_processes >= 1 + WORKERS  # the trainer and its workers were watched
        assert memory.peak < LIMIT, f"peak RssAnon {memory.peak / 2**20:.0f} MiB: {[m >> 20 for m in memory.at_peak]}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
