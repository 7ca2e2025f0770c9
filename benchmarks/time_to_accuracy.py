"""Time to accuracy on MNIST: steepest's Trainer, a hand-written PyTorch loop and PyTorch Lightning,
side by side with the same model, optimizer, batch size and evaluation, mean over seeds.

    python benchmarks/time_to_accuracy.py                    # CPU, target 0.97, seeds 0 1 2
    python benchmarks/time_to_accuracy.py --device cuda --target 0.98 --out time_to_accuracy_gpu.md

Model: MLP 784-256-10, AdamW lr 1e-3, batch 128, fp32, inputs standardized with the training mean
and std. After every epoch each runner evaluates on the 10,000 official test images; the clock
(wall time from the first step, evaluation included) stops at the first epoch whose accuracy reaches
the target. Lightning is used as its users use it: a LightningModule, a DataLoader over a
TensorDataset, logging, checkpointing and the progress bar off. A warm-up epoch per runner is untimed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.data import DataBundle, DataInfo, DeviceLoader, Split  # noqa: E402
from steepest.data.idx import load_idx_dataset  # noqa: E402
from steepest.training.callbacks import Evaluate  # noqa: E402
from steepest.training.events import Callback  # noqa: E402
from steepest.training.trainer import Trainer, TrainerOptions  # noqa: E402

BATCH, LR = 128, 1e-3


def mnist(device: torch.device) -> DataBundle:
    parts = load_idx_dataset("mnist", None)
    x_tr, y_tr, x_te, y_te = (torch.as_tensor(parts[k]) for k in ("train_images", "train_labels", "test_images", "test_labels"))
    x_tr, x_te = x_tr.reshape(len(x_tr), -1).float() / 255, x_te.reshape(len(x_te), -1).float() / 255
    mean, std = x_tr.mean(), x_tr.std()
    train = Split(((x_tr - mean) / std).to(device), y_tr.long().to(device))
    test = Split(((x_te - mean) / std).to(device), y_te.long().to(device))
    return DataBundle(train, test, test, DataInfo("mnist", "classification", (784,), 10, num_classes=10))


def model(seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)


@torch.no_grad()
def accuracy(net: nn.Module, split: Split) -> float:
    net.eval()
    right = sum(int((net(split.x[i : i + 4096]).argmax(1) == split.y[i : i + 4096]).sum()) for i in range(0, len(split), 4096))
    net.train()
    return right / len(split)


def run_raw(data: DataBundle, seed: int, target: float, max_epochs: int, device: torch.device) -> tuple[float, int]:
    net = model(seed, device)
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.train.x, data.train.y
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).to(device)
        for i in range(0, len(x), BATCH):
            idx = perm[i : i + BATCH]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if accuracy(net, data.test) >= target:
            return time.perf_counter() - start, epoch
    return float("nan"), max_epochs


class _StopAtTarget(Callback):
    def __init__(self, target: float):
        self.target, self.epochs = target, 0

    def on_eval_end(self, trainer, split, metrics):
        self.epochs = trainer.state.epoch
        if metrics["val_accuracy"] >= self.target:
            trainer.state.request_stop("target reached")


def run_steepest(data: DataBundle, seed: int, target: float, max_epochs: int, device: torch.device) -> tuple[float, int]:
    net = model(seed, device)
    stop = _StopAtTarget(target)
    loader = DeviceLoader(data.train.x, data.train.y, BATCH, seed=seed)
    trainer = Trainer(net, torch.optim.AdamW(net.parameters(), lr=LR), nn.CrossEntropyLoss(), loader,
                      options=TrainerOptions(max_epochs=max_epochs, log_every_n_steps=10**9), eval_data={"val": data.val},
                      info=data.info, callbacks=[Evaluate(1), stop])
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    return (elapsed if trainer.state.stop_reason == "target reached" else float("nan")), stop.epochs


def run_lightning(data: DataBundle, seed: int, target: float, max_epochs: int, device: torch.device) -> tuple[float, int]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.reached_at = model(seed, device), None

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def on_train_epoch_end(self):
            if accuracy(self.net, data.test) >= target:
                self.reached_at = self.current_epoch + 1
                self.trainer.should_stop = True

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR)

    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    module = Module()
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(module, loader)
    elapsed = time.perf_counter() - start
    return (elapsed if module.reached_at else float("nan")), module.reached_at or max_epochs


RUNNERS = {"raw PyTorch loop": run_raw, "steepest Trainer": run_steepest, "PyTorch Lightning": run_lightning}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="results file name under benchmarks/results/")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = mnist(device)
    runners = dict(RUNNERS)
    try:
        import lightning  # noqa: F401
    except ImportError:
        runners.pop("PyTorch Lightning")
        print("lightning is not installed: pip install lightning (the bench extra)")
    for fn in runners.values():  # untimed warm-up: one epoch each
        fn(data, 99, 2.0, 1, device)
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in runners}
    for seed in args.seeds:  # round-robin, so a noisy machine slows every runner alike
        for name, fn in runners.items():
            results[name].append(fn(data, seed, args.target, args.max_epochs, device))
            print(f"seed {seed} {name}: {results[name][-1][0]:.2f} s, {results[name][-1][1]} epochs", flush=True)
    raw = statistics.mean(t for t, _ in results["raw PyTorch loop"])
    lines = [f"# Time to {args.target:.0%} test accuracy on MNIST", "", header(device), "",
             f"MLP 784-256-10, AdamW lr {LR}, batch {BATCH}, fp32; evaluation on the 10k test images after every epoch; "
             f"mean over seeds {args.seeds}.", "",
             "| runner | seconds to target (mean) | per seed | epochs | seconds per epoch | ratio to raw loop |",
             "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        mean = statistics.mean(t for t, _ in rows)
        lines.append(f"| {name} | {mean:.2f} | {' / '.join(f'{t:.2f}' for t, _ in rows)} | "
                     f"{' / '.join(str(e) for _, e in rows)} | {sum(t for t, _ in rows) / sum(e for _, e in rows):.2f} | "
                     f"{mean / raw:.2f}x |")
    report(lines, args.out)


if __name__ == "__main__":
    main()
