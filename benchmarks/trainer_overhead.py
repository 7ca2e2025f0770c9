"""Trainer vs a hand-written PyTorch loop: same model, data, seeds and order, run alternately.

    python benchmarks/trainer_overhead.py               # CPU (and CUDA when available)
    python benchmarks/trainer_overhead.py --steps 300 --repeats 7

On CUDA a second row runs both with the model compiled into CUDA graphs (torch.compile
"reduce-overhead", fused AdamW): the raw loop begins a graph step before each forward, the Trainer
runs with `cuda_graphs=True` (what `trainer.cuda_graphs: true` sets up).

Model: MLP 784-512-256-10, batch 512, AdamW, fp32, on random MNIST-shaped data held on the device.
Prints ms/step for each, the ratio Trainer/raw, and whether the final weights are bit-identical.
The Trainer runs with evaluation and checkpoints off (the raw loop has neither) and its default
logging (a host sync every 10 steps) and non-finite check (skipped on the device, no host sync) on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name, header, median, report, timed  # noqa: E402

from steepest.data import DataBundle, DataInfo, DeviceLoader, Split  # noqa: E402
from steepest.training.callbacks import TrainScalars  # noqa: E402
from steepest.training.trainer import Trainer, TrainerOptions  # noqa: E402

BATCH, LR = 512, 1e-3


def make_model(device, graphs: bool = False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    if graphs:
        model.compile(mode="reduce-overhead")
    return model


def make_optimizer(model, graphs: bool):
    return torch.optim.AdamW(model.parameters(), lr=LR, fused=True) if graphs else torch.optim.AdamW(model.parameters(), lr=LR)


def make_data(n: int, device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 784, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    split = Split(x.to(device), y.to(device))
    info = DataInfo("synthetic", "classification", (784,), 10, num_classes=10)
    return DataBundle(split, split, split, info)


def raw_loop(model, data: DataBundle, steps: int, seed: int = 0, graphs: bool = False):
    opt = make_optimizer(model, graphs)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.train.x, data.train.y
    n = len(x)
    per_epoch = (n + BATCH - 1) // BATCH
    step = 0
    while step < steps:
        epoch = step // per_epoch
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).to(x.device)
        for i in range(per_epoch):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step == steps:
                break
    return model


def trainer_loop(model, data: DataBundle, steps: int, seed: int = 0, graphs: bool = False):
    opt = make_optimizer(model, graphs)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), DeviceLoader(data.train.x, data.train.y, BATCH, seed=seed),
                      options=TrainerOptions(max_steps=steps, cuda_graphs=graphs), info=data.info, callbacks=[TrainScalars(10)])
    trainer.fit()
    return model


def bench(device: torch.device, steps: int, repeats: int, graphs: bool = False) -> dict:
    data = make_data(BATCH * 40, device)
    # Warm-up (untimed): allocator, kernels, first-call overheads (compilation and graph recording).
    raw_loop(make_model(device, graphs), data, 20, graphs=graphs)
    trainer_loop(make_model(device, graphs), data, 20, graphs=graphs)
    t_raw, t_trn = [], []
    for _ in range(repeats):
        m_raw, m_trn = make_model(device, graphs), make_model(device, graphs)
        t_raw.append(timed(lambda m=m_raw: raw_loop(m, data, steps, graphs=graphs), device) / steps)
        t_trn.append(timed(lambda m=m_trn: trainer_loop(m, data, steps, graphs=graphs), device) / steps)
    identical = all(torch.equal(a, b) for a, b in zip(m_raw.state_dict().values(), m_trn.state_dict().values()))
    raw, trn = median(t_raw), median(t_trn)
    return {"device": device_name(device) + (", CUDA graphs" if graphs else ""), "raw_ms": raw * 1e3, "trainer_ms": trn * 1e3, "ratio": trn / raw, "identical": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--out", default=None, help="results file name under benchmarks/results/")
    args = parser.parse_args()
    devices = [torch.device(d) for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    lines = ["# Trainer overhead vs a raw PyTorch loop", "", "MLP 784-512-256-10, batch 512, AdamW fp32; "
             f"{args.steps} steps per run, median of {args.repeats} alternating runs.", ""]
    lines += ["| device | raw loop ms/step | Trainer ms/step | ratio | final weights identical |", "|---|---|---|---|---|"]
    for device in devices:
        for graphs in ((False, True) if device.type == "cuda" else (False,)):
            try:
                r = bench(device, args.steps, args.repeats, graphs)
            except Exception as exc:  # report and go on: the other rows still count
                lines.append(f"| {device_name(device)}{', CUDA graphs' if graphs else ''} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150]} | | | |")
                print(lines[-1], flush=True)
                continue
            lines.append(f"| {r['device']} | {r['raw_ms']:.3f} | {r['trainer_ms']:.3f} | {r['ratio']:.3f}x | {r['identical']} |")
            print(lines[-1], flush=True)
        lines.insert(1, header(device))
    report(lines, args.out)


if __name__ == "__main__":
    main()
