"""Input pipeline throughput: steepest's loaders beside hand-written PyTorch ones, in one run.

    python benchmarks/input_pipeline.py            # full sizes; writes benchmarks/results/input_pipeline_cpu.md
    python benchmarks/input_pipeline.py --quick    # small sizes, a smoke run (prints only, unless --out)
    python benchmarks/input_pipeline.py --threads 1  # one intra-op thread: steadier where other jobs share the cores
    python benchmarks/input_pipeline.py --threads 1 --only images,memmap_training --out input_pipeline_folders_cpu.md
        # sections 1 and 4 alone (reading from an image folder, training from a memory-mapped folder)

1. Image folder: >= 20,000 RGB PNG files (MNIST digits, 32x32, coloured so the three channels
   differ; one sub-folder per class), written once under .cache/benchmarks/input_pipeline/ (git
   ignored). steepest's path is what `steepest train` builds for a recipe `data: {format:
   image_folder, transforms: ...}`: `load_data` (-> `load_images`: the training split's `ImageFiles`
   Dataset and its per-sample training transform) and `build_loader` (a `SampleLoader`: per-sample
   (seed, epoch, index) generators, and the per-batch data check where this steepest has one). The
   hand-written path is a `torch.utils.data.DataLoader` (shuffle=True) over a Dataset of the same files that
   decodes with Pillow and calls the same transform callables with one generator per worker
   process. Both at num_workers 0 and 2; images/s over a fixed number of batches after untimed
   warm-up batches (which also cover worker start-up), median of alternating repeats. A per-sample
   cost table (one process) says where the difference goes.
2. Training throughput on 10,000 MNIST rows (784 features): an MLP 784-256-10 step (forward,
   backward, AdamW) fed by the in-memory fast path (`DeviceLoader`, tensor slices) or by
   `SampleLoader` over a `TensorDataset` of the same tensors (per-sample indexing + collate), with
   a plain `DataLoader(TensorDataset)` for reference; steps/s, and loader-only batches/s.
3. A memory-mapped .npy (float32 rows of 1024 values, ~400 MB; written once) opened with
   np.load(mmap_mode="r"), read through `SampleLoader` via a Dataset with `__getitems__` (one
   fancy-index gather per batch; `EpochIndexed` forwards it when no transform runs): one epoch,
   samples/s and the peak anonymous memory (RssAnon of the main process plus its workers, sampled
   every 5 ms), beside a plain np.load of the same file for contrast. The page cache is warm.
4. Training through the recipe path on the same rows (x.npy linked, y.npy from a rule on x):
   `format: memmap` (workers 0 and 2) against `format: npz` (the arrays read into memory, the
   DeviceLoader fast path); rows/s of `Trainer.fit` and the peak anonymous memory.

Timing: time.perf_counter; untimed warm-up; median of --repeats repeats, run alternately.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, median, report  # noqa: E402

from steepest.config.build import build_loader  # noqa: E402
from steepest.config.load import recipe_from_dict  # noqa: E402
from steepest.data.bundle import load_data  # noqa: E402
from steepest.data.idx import load_idx_dataset  # noqa: E402
from steepest.data.loader import DeviceLoader  # noqa: E402
from steepest.data.stream import EpochIndexed, SampleLoader  # noqa: E402
from steepest.data.transforms import load_image, sample_generator, sample_generators  # noqa: E402
from steepest.errors import DataError  # noqa: E402
from steepest.training.distributed import DistContext  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "benchmarks" / "input_pipeline"
SHARED_DATA = Path("/work/shared/data")
GOAL = 1.05  # steepest's time per image within 1.05x of the hand-written loader's

IMAGE_SIZE = 32
TRANSFORMS = {"random_resized_crop": {"scale": [0.5, 1.0]}, "hflip": 0.5}  # + normalize: standard (fitted)
IMAGE_BATCH = 128
MLP_BATCH = 128
ROW_WIDTH = 1024  # float32 values per memmap row (4 KiB)
ROW_BATCH = 256

# Repeats are many and short, run alternately, so that other processes on a shared machine slow
# every runner alike; the paired ratios (runners of one repeat, back to back) cancel slow drift.
FULL = {"images": 20_000, "image_batches": 40, "image_warmup": 5, "image_repeats": 9, "rows": 10_000, "train_repeats": 15,
        "mmap_rows": 100_000, "mmap_repeats": 3, "cost_samples": 400}
QUICK = {"images": 2_000, "image_batches": 8, "image_warmup": 2, "image_repeats": 3, "rows": 2_000, "train_repeats": 3,
         "mmap_rows": 10_000, "mmap_repeats": 3, "cost_samples": 100}


# ---------------------------------------------------------------------------------------------
# Data, written once


def mnist_arrays(data_dir: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST's 60k training images (N, 28, 28) uint8 and labels, or scikit-learn's digits (8x8,
    scaled to 0..255) when MNIST is not on this machine."""
    try:
        parts = load_idx_dataset("mnist", data_dir)
        return parts["train_images"], parts["train_labels"].astype(np.int64), "MNIST training images"
    except DataError as exc:
        from sklearn.datasets import load_digits

        print(f"MNIST not found ({exc}); using scikit-learn's digits", flush=True)
        digits = load_digits()
        return (digits.images / 16 * 255).astype(np.uint8), digits.target.astype(np.int64), "scikit-learn digits (repeated)"


def image_folder(images: np.ndarray, labels: np.ndarray, count: int) -> Path:
    """`count` RGB PNGs (IMAGE_SIZE square) under CACHE, one sub-folder per class; written once
    (a marker file records a finished folder)."""
    root = CACHE / f"png{IMAGE_SIZE}_{count}"
    done = root / ".complete"
    if done.is_file() and done.read_text().strip() == str(count):
        return root
    print(f"writing {count} PNG files to {root} (once)", flush=True)
    for i in range(count):
        k = i % len(images)
        gray = images[k].astype(np.float32)
        rgb = np.stack([gray, gray * 0.8, 255 - gray], axis=-1).astype(np.uint8)  # colour, so RGB matters
        folder = root / f"class_{int(labels[k])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(folder / f"{i:06d}.png")
    done.write_text(str(count))
    return root


def row_file(rows: int) -> Path:
    """A float32 (rows, ROW_WIDTH) .npy of standard normal values, written once in chunks (never
    held in memory whole)."""
    path = CACHE / f"rows_{rows}x{ROW_WIDTH}_f32.npy"
    if path.is_file() and np.load(path, mmap_mode="r").shape == (rows, ROW_WIDTH):
        return path
    print(f"writing {path} ({rows * ROW_WIDTH * 4 / 1e6:.0f} MB, once)", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, ROW_WIDTH))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 8192):
        stop = min(start + 8192, rows)
        out[start:stop] = rng.standard_normal((stop - start, ROW_WIDTH), dtype=np.float32)
    out.flush()
    del out
    tmp.rename(path)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once into a reused buffer, so every timed epoch sees the same (warm) cache."""
    buffer = bytearray(1 << 24)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buffer):
            pass


# ---------------------------------------------------------------------------------------------
# 1. Image folder


class HandImages(Dataset):
    """The hand-written Dataset: Pillow decode -> float tensor (C, H, W) in [0, 1] -> transform(x,
    generator), with one torch.Generator per process (seeded by worker id), as a user would write."""

    def __init__(self, files: list[Path], labels: list[int], transform, seed: int = 0):
        self.files, self.labels, self.transform, self.seed = files, labels, transform, seed
        self._generator: tuple[int, torch.Generator] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def generator(self) -> torch.Generator:
        if self._generator is None or self._generator[0] != os.getpid():
            info = get_worker_info()
            self._generator = (os.getpid(), torch.Generator().manual_seed(self.seed + (info.id + 1 if info else 0)))
        return self._generator[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(hand_decode(self.files[i]), self.generator()), torch.tensor(self.labels[i])


def hand_decode(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


def images_per_second(make: Callable[[], Iterator], warmup: int, batches: int) -> float:
    """Images/s over `batches` batches of a fresh iterator, after `warmup` untimed ones (worker
    start-up and the first prefetches happen there)."""
    it = make()
    for _ in range(warmup):
        next(it)
    count = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        count += len(x)
    seconds = time.perf_counter() - t0
    if hasattr(it, "close"):
        it.close()
    del it
    gc.collect()  # workers shut down here, outside the clock
    return count / seconds


def per_sample_costs(files: list[Path], transform, n: int, repeats: int) -> dict[str, float]:
    """Microseconds per sample of each stage, one process (median over repeats of n files)."""
    files = files[:n]
    x = load_image(files[0], 3)
    g = torch.Generator().manual_seed(0)

    stages = {
        "steepest decode (`load_image`: Pillow + EXIF transpose + to_tensor)": lambda i: load_image(files[i], 3),
        "hand-written decode (Pillow convert RGB + from_numpy)": lambda i: hand_decode(files[i]),
        "steepest `sample_generator(seed, epoch, index)`, one by one": lambda i: sample_generator(0, 1, i),
        f"steepest `sample_generators` per micro-batch of {IMAGE_BATCH} (what SampleLoader runs), per sample":
            lambda i: sample_generators(0, 1, range(i, i + IMAGE_BATCH)) if i % IMAGE_BATCH == 0 else None,
        "transform (the recipe's Compose, same for both)": lambda i: transform(x, g),
    }
    for fn in stages.values():
        fn(0)
    passes: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeats):  # the stages interleaved file by file, so background load hits them alike
        total = dict.fromkeys(stages, 0.0)
        for i in range(len(files)):
            for name, fn in stages.items():
                t0 = time.perf_counter()
                fn(i)
                total[name] += time.perf_counter() - t0
        for name in stages:
            passes[name].append(total[name] / len(files) * 1e6)
    out = {name: median(v) for name, v in passes.items()}
    return out


def bench_images(images: np.ndarray, labels: np.ndarray, source: str, size: dict, repeats: int) -> list[str]:
    root = image_folder(images, labels, size["images"])
    cpu = torch.device("cpu")

    def recipe(workers: int):
        return recipe_from_dict({"data": {"format": "image_folder", "path": str(root), "image_size": IMAGE_SIZE, "channels": 3,
                                          "transforms": TRANSFORMS, "normalize": "standard", "batch_size": IMAGE_BATCH,
                                          "num_workers": workers}, "trainer": {"seed": 0}})

    data = load_data(recipe(0).data)
    train, transform = data.train.dataset, data.train.transform
    hand = HandImages(train.files, train.labels, transform)
    for i in range(0, len(train), max(1, len(train) // 16)):  # the two decoders agree
        assert torch.allclose(load_image(train.files[i], 3), hand_decode(train.files[i])), train.files[i]

    def steepest_loader(workers: int) -> Callable[[], Iterator]:
        loader = build_loader(recipe(workers), data, DistContext(), cpu)  # what `steepest train` builds
        assert isinstance(loader, SampleLoader) and loader.dataset.dataset is train
        checks.append(getattr(loader, "check", None) is not None)
        epoch = iter(range(10**6))
        return lambda: loader.batches(next(epoch))

    def hand_loader(workers: int) -> Callable[[], Iterator]:
        loader = DataLoader(hand, batch_size=IMAGE_BATCH, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(0))
        return lambda: iter(loader)

    rows, checks = [], []
    for workers in (0, 2):
        runners = {"hand-written DataLoader": hand_loader(workers), "steepest SampleLoader": steepest_loader(workers)}
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(repeats):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))  # alternate who goes first
            for name in order:
                rates[name].append(images_per_second(runners[name], size["image_warmup"], size["image_batches"]))
        hand_rate, ours = median(rates["hand-written DataLoader"]), median(rates["steepest SampleLoader"])
        ratio = hand_rate / ours  # time per image, steepest / hand-written
        paired = median([h / o for h, o in zip(rates["hand-written DataLoader"], rates["steepest SampleLoader"])])
        rows.append(f"| {workers} | {hand_rate:,.0f} | {ours:,.0f} | {ratio:.3f}x | {paired:.3f}x | "
                    f"{'yes' if max(ratio, paired) <= GOAL else 'no'} | "
                    f"{' / '.join(f'{v:,.0f}' for v in rates['hand-written DataLoader'])} | "
                    f"{' / '.join(f'{v:,.0f}' for v in rates['steepest SampleLoader'])} |")
        print(rows[-1], flush=True)

    check = all(checks)
    costs = per_sample_costs(train.files, transform, size["cost_samples"], 5)
    keys = list(costs)
    ours_us = costs[keys[0]] + costs[keys[3]] + costs[keys[4]]  # decode + batched generators + transform
    hand_us = costs[keys[1]] + costs[keys[4]]
    lines = ["## 1. Image folder: images/s, steepest SampleLoader vs a hand-written DataLoader", "",
             f"{size['images']:,} RGB PNG files {IMAGE_SIZE}x{IMAGE_SIZE} ({source}, coloured), 10 class folders; the "
             f"training split ({len(train):,} files) of `data: {{format: image_folder, image_size: {IMAGE_SIZE}, "
             f"transforms: {TRANSFORMS}, normalize: standard}}` -> `{transform}`. steepest: the loader `steepest train` "
             f"builds (`build_loader` -> SampleLoader{' with its per-batch check' if check else ''}); hand-written: "
             "DataLoader(shuffle=True) over a Dataset that decodes with Pillow and calls the same transform with one "
             "generator per worker.",
             f"Batch {IMAGE_BATCH}; per repeat a fresh pass: {size['image_warmup']} untimed warm-up batches, then "
             f"{size['image_batches']} timed batches ({size['image_batches'] * IMAGE_BATCH:,} images); median of {repeats} "
             "alternating repeats. Ratio = steepest's time per image / the hand-written loader's (goal <= 1.05x): of the "
             "medians, and the median of the per-repeat ratios (the two loaders of one repeat ran back to back).", "",
             "| num_workers | hand-written images/s | steepest images/s | ratio | paired ratio | within 1.05x | hand-written per repeat | steepest per repeat |",
             "|---|---|---|---|---|---|---|---|", *rows, "",
             f"Where the time goes: microseconds per sample in one process (the stages timed interleaved, file by file; "
             f"median of 5 passes over {size['cost_samples']} files):", "",
             "| stage | us/sample |", "|---|---|", *(f"| {k} | {v:.1f} |" for k, v in costs.items()),
             f"| **steepest per sample** (decode + sample_generators + transform) | **{ours_us:.1f}** |",
             f"| **hand-written per sample** (decode + transform) | **{hand_us:.1f}** |",
             f"| predicted ratio (without collate and loader overhead, the same in both) | {ours_us / hand_us:.3f}x |", ""]
    return lines


# ---------------------------------------------------------------------------------------------
# 2. In-memory fast path vs the loader path, training steps


def make_mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def train_epochs(batches: Callable[[int], Iterator], epochs: int, first_epoch: int, model, opt, train: bool) -> tuple[int, float]:
    """(steps, seconds) of `epochs` epochs of training (or, with train=False, of reading the batches)."""
    steps = 0
    t0 = time.perf_counter()
    for epoch in range(first_epoch, first_epoch + epochs):
        for x, y in batches(epoch):
            if train:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            steps += 1
    return steps, time.perf_counter() - t0


def bench_training(images: np.ndarray, labels: np.ndarray, source: str, size: dict, repeats: int) -> list[str]:
    n = size["rows"]
    x = torch.from_numpy(images[:n].reshape(n, -1).astype(np.float32) / 255)
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(labels[:n])
    cpu = torch.device("cpu")
    device_loader = DeviceLoader(x, y, MLP_BATCH, seed=0)
    sample0 = SampleLoader(TensorDataset(x, y), MLP_BATCH, seed=0, device=cpu)
    sample2 = SampleLoader(TensorDataset(x, y), MLP_BATCH, seed=0, device=cpu, num_workers=2, persistent_workers=True)
    plain = DataLoader(TensorDataset(x, y), batch_size=MLP_BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
    runners = {
        "steepest DeviceLoader (in-memory fast path)": device_loader.batches,
        "steepest SampleLoader(TensorDataset), workers 0": sample0.batches,
        "steepest SampleLoader(TensorDataset), workers 2 persistent": sample2.batches,
        "torch DataLoader(TensorDataset, shuffle=True), workers 0 (reference)": lambda epoch: iter(plain),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for name, batches in runners.items():
        model, opt = make_mlp()
        train_epochs(batches, 1, 0, model, opt, True)  # untimed warm-up epoch (and worker start-up)
        results[name] = {"train": [], "read": []}
    names = list(runners)
    for r in range(repeats):  # one epoch per runner per repeat, the order rotated each repeat
        for name in names[r % len(names):] + names[: r % len(names)]:
            model, opt = make_mlp()
            steps, seconds = train_epochs(runners[name], 1, r + 1, model, opt, True)
            results[name]["train"].append(steps / seconds)
            steps, seconds = train_epochs(runners[name], 1, r + 1, model, opt, False)
            results[name]["read"].append(steps / seconds)
    base = results[names[0]]["train"]
    fast = median(base)
    lines = ["## 2. Training steps/s: in-memory fast path vs the loader path", "",
             f"{n:,} rows of {source} (784 features, standardized), batch {MLP_BATCH} ({len(device_loader)} steps per epoch); "
             f"MLP 784-256-10, cross-entropy, AdamW, fp32; one epoch per runner per repeat (order rotated) after one untimed "
             f"epoch each; median of {repeats} repeats. Ratio = time per step / DeviceLoader's: of the medians, and the "
             "median of the per-repeat ratios. Loader only = the same batches read without a training step.", "",
             "| loader | train steps/s | ratio to DeviceLoader | paired ratio | loader only, batches/s |", "|---|---|---|---|---|"]
    for name, r in results.items():
        steps = median(r["train"])
        paired = median([b / v for b, v in zip(base, r["train"])])
        lines.append(f"| {name} | {steps:,.0f} | {fast / steps:.2f}x | {paired:.2f}x | {median(r['read']):,.0f} |")
        print(lines[-1], flush=True)
    del sample2
    gc.collect()
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# 3. A memory-mapped .npy through SampleLoader


class MemmapRows(Dataset):
    """Rows of a .npy opened with mmap_mode="r", and their labels; `__getitems__` reads a whole
    batch in one fancy-index gather and returns it already batched (collate with `as_batch`)."""

    def __init__(self, path: Path, labels: np.ndarray):
        self.x, self.y = np.load(path, mmap_mode="r"), labels

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.x[i])), torch.tensor(self.y[i])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.x[indices]), torch.from_numpy(self.y[indices])


def as_batch(batch):
    """The collate function: a batch `__getitems__` already built passes as it is; a list of samples
    (the per-sample path) is stacked as torch's default does."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out + [g for c in out for g in _children(c)]


def anon_kb(pid: int, children: bool = False, field: str = "RssAnon:", status: str = "status") -> int:
    """`field` (kB) from /proc/PID/`status` of `pid`, summed with its children's when asked."""
    total = 0
    for p in [pid, *(_children(pid) if children else [])]:
        try:
            with open(f"/proc/{p}/{status}") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith(field)), 0)
        except OSError:
            pass
    return total


class AnonPeak:
    """The peak of RssAnon summed over this process and its children, sampled every `interval` s."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.peak = max(self.peak, anon_kb(me, children=True))
            self._stop.wait(self.interval)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bench_memmap(size: dict, repeats: int) -> list[str]:
    rows = size["mmap_rows"]
    path = row_file(rows)
    megabytes = path.stat().st_size / 1e6
    warm_page_cache(path)
    labels = np.random.default_rng(1).integers(0, 10, rows)
    dataset = MemmapRows(path, labels)
    assert hasattr(EpochIndexed, "__getitems__"), "this steepest's EpochIndexed does not forward __getitems__"
    lines = ["## 3. Memory-mapped .npy through SampleLoader: one epoch", "",
             f"`{path.name}`: float32 ({rows:,}, {ROW_WIDTH}), {megabytes:,.0f} MB, opened with np.load(mmap_mode=\"r\"), page "
             f"cache warm; batch {ROW_BATCH} (one `__getitems__` gather per batch), shuffled; median of {repeats} epochs after "
             "an untimed one (workers persistent, started in that one). Memory: RssAnon (anonymous resident memory, /proc/PID/status) of the main process plus its "
             "workers, sampled every 5 ms during the timed epochs; before = the same sum after the warm-up epoch (workers "
             "started, idle). A forked worker's RssAnon counts the pages it shares copy-on-write with the main process, so "
             "the sum with workers overstates what is used; Pss_Anon (/proc/PID/smaps_rollup, shared pages divided among "
             "their sharers; read once after the epochs, too slow to sample) is the real total.", "",
             "| reader | samples/s | MB/s | RssAnon before MB | peak RssAnon MB | peak - before MB | Pss_Anon after MB |",
             "|---|---|---|---|---|---|---|"]
    for workers in (0, 2):
        loader = SampleLoader(dataset, ROW_BATCH, seed=0, num_workers=workers, persistent_workers=True, collate_fn=as_batch,
                              device=torch.device("cpu"))
        for x, _ in loader.batches(0):  # untimed warm-up epoch (starts the persistent workers)
            assert x.shape[1:] == (ROW_WIDTH,)
        gc.collect()
        before = anon_kb(os.getpid(), children=True)
        rates = []
        with AnonPeak() as peak:
            for epoch in range(1, repeats + 1):
                count = 0
                t0 = time.perf_counter()
                for x, _ in loader.batches(epoch):
                    count += len(x)
                rates.append(count / (time.perf_counter() - t0))
        assert count == rows
        pss = anon_kb(os.getpid(), children=True, field="Pss_Anon:", status="smaps_rollup")
        rate = median(rates)
        lines.append(f"| SampleLoader, workers {workers} | {rate:,.0f} | {rate * ROW_WIDTH * 4 / 1e6:,.0f} | {before / 1024:,.0f} | "
                     f"{peak.peak / 1024:,.0f} | {(peak.peak - before) / 1024:+,.0f} | {pss / 1024:,.0f} |")
        print(lines[-1], flush=True)
        del loader
        gc.collect()
    before = anon_kb(os.getpid())
    with AnonPeak() as peak:
        t0 = time.perf_counter()
        whole = np.load(path)
        seconds = time.perf_counter() - t0
        pss = anon_kb(os.getpid(), field="Pss_Anon:", status="smaps_rollup")
        del whole
    lines.append(f"| contrast: np.load without mmap (the whole file read into memory) | {rows / seconds:,.0f} | {megabytes / seconds:,.0f} | "
                 f"{before / 1024:,.0f} | {peak.peak / 1024:,.0f} | {(peak.peak - before) / 1024:+,.0f} | {pss / 1024:,.0f} |")
    print(lines[-1], flush=True)
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# 4. Training from a memory-mapped folder vs the same arrays in memory (the recipe path)


def memmap_folder(rows: int) -> tuple[Path, Path]:
    """DIR/x.npy (a link to the rows file of section 3) and DIR/y.npy (10 classes, the argmax of the
    first 10 columns: learnable), and the same arrays as one uncompressed .npz (written once)."""
    folder = CACHE / f"memmap_{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    x_path = row_file(rows)
    if not (folder / "x.npy").exists():
        (folder / "x.npy").symlink_to(x_path)
    if not (folder / "y.npy").is_file():
        x = np.load(x_path, mmap_mode="r")
        y = np.concatenate([np.argmax(x[i : i + 8192, :10], axis=1) for i in range(0, rows, 8192)]).astype(np.int64)
        np.save(folder / "y.npy", y)
    npz = CACHE / f"memmap_{rows}.npz"
    if not npz.is_file():
        print(f"writing {npz} (once)", flush=True)
        np.savez(CACHE / "tmp_arrays.npz", x=np.load(x_path), y=np.load(folder / "y.npy"))
        (CACHE / "tmp_arrays.npz").rename(npz)
    return folder, npz


def bench_memmap_training(size: dict, repeats: int) -> list[str]:
    from steepest.run import (
        build_run,  # the whole recipe path: load_data -> build_run -> Trainer.fit
    )

    rows = size["mmap_rows"]
    folder, npz = memmap_folder(rows)
    warm_page_cache(folder / "x.npy")
    warm_page_cache(npz)
    common = {"batch_size": 512, "normalize": "standard", "split": [0.98, 0.01, 0.01]}
    runners = {
        "in memory (`format: npz`, DeviceLoader)": {"format": "npz", "path": str(npz)},
        "memory-mapped (`format: memmap`), workers 0": {"format": "memmap", "path": str(folder)},
        "memory-mapped (`format: memmap`), workers 2": {"format": "memmap", "path": str(folder), "num_workers": 2},
    }
    results: dict[str, dict[str, list[float]]] = {name: {"rate": [], "peak": []} for name in runners}
    names = list(runners)
    train_rows = 0
    for r in range(repeats + 1):  # repeat 0 is an untimed warm-up of every runner
        for name in names[r % len(names):] + names[: r % len(names)]:
            recipe = recipe_from_dict({"data": {**runners[name], **common}, "model": {"name": "mlp", "hidden": [256]},
                                       "optimizer": {"name": "adamw", "lr": 1e-3},
                                       "trainer": {"max_epochs": 1, "seed": r, "progress": "off", "eval_every_n_epochs": 100},
                                       "checkpoint": {"enabled": False}})
            gc.collect()
            before = anon_kb(os.getpid(), children=True)
            with AnonPeak() as peak:
                data = load_data(recipe.data)
                run = build_run(recipe, None, data=data, console=False)
                train_rows = len(data.train)
                t0 = time.perf_counter()
                run.trainer.fit()
                seconds = time.perf_counter() - t0
            if r:
                results[name]["rate"].append(train_rows / seconds)
                results[name]["peak"].append((peak.peak - before) / 1024)
            del run, data
    base = results[names[0]]["rate"]
    lines = ["## 4. Training from a memory-mapped folder vs the same arrays in memory", "",
             f"x.npy float32 ({rows:,}, {ROW_WIDTH}) and y.npy (10 classes), {train_rows:,} training rows (split 0.98/0.01/0.01), "
             "page cache warm; the recipe path (`load_data` -> `build_run` -> `Trainer.fit`): MLP 1024-256-10, AdamW, batch 512, "
             "`normalize: standard`, one epoch with the validation pass at its end, checkpoints off. `format: npz` reads the "
             "arrays into memory (the DeviceLoader fast path); `format: memmap` reads each batch from the mapped file through "
             "SampleLoader with the per-batch data check. Rows/s = training rows / seconds of `fit`; peak = RssAnon of the "
             f"process and its workers during load + build + fit, above what it held before (MB). Median of {repeats} repeats, "
             "runners rotated; ratio = time per row / in-memory's (of the medians; paired: median of per-repeat ratios).", "",
             "| data | rows/s | ratio to in memory | paired ratio | peak RssAnon above before, MB |", "|---|---|---|---|---|"]
    for name in names:
        rate = median(results[name]["rate"])
        paired = median([b / v for b, v in zip(base, results[name]["rate"])])
        lines.append(f"| {name} | {rate:,.0f} | {median(base) / rate:.2f}x | {paired:.2f}x | {median(results[name]['peak']):+,.0f} |")
        print(lines[-1], flush=True)
    return lines + [""]


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of every measurement (default: images 9, "
                        "training 15, memmap 3; 3 with --quick)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA) if SHARED_DATA.is_dir() else None,
                        help="folder holding mnist/ (default: /work/shared/data when present, else STEEPEST_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the main process (default: "
                        "torch's; 1 keeps the figures steady when other processes share the cores)")
    parser.add_argument("--only", default="images,training,memmap,memmap_training", help="sections to run, comma-separated")
    parser.add_argument("--out", default=None, help="results file under benchmarks/results/ (default input_pipeline_cpu.md; "
                        "none with --quick)")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or (None if args.quick else "input_pipeline_cpu.md")
    only = set(args.only.split(","))
    images, labels, source = mnist_arrays(args.data_dir)
    started, load = time.perf_counter(), os.getloadavg()[0]
    lines = ["# Input pipeline: steepest's loaders vs hand-written PyTorch", "", header(torch.device("cpu")),
             f"{os.cpu_count()} CPU cores; `python {' '.join(['benchmarks/input_pipeline.py', *sys.argv[1:]])}`", ""]
    if "images" in only:
        lines += bench_images(images, labels, source, size, args.repeats or size["image_repeats"])
    if "training" in only:
        lines += bench_training(images, labels, source, size, args.repeats or size["train_repeats"])
    if "memmap" in only:
        lines += bench_memmap(size, args.repeats or size["mmap_repeats"])
    if "memmap_training" in only:
        lines += bench_memmap_training(size, args.repeats or size["mmap_repeats"])
    lines.append(f"Whole run: {time.perf_counter() - started:.0f} s; 1-minute load average {load:.2f} at the start, "
                 f"{os.getloadavg()[0]:.2f} at the end.")
    report(lines, out)


if __name__ == "__main__":
    main()
