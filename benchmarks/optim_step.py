"""One optimizer step over GPT-2-shaped parameters: steepest's optimizers beside public ones.

    python benchmarks/optim_step.py                      # CPU: width-scaled GPT-2 (d=256, vocab 8192)
    python benchmarks/optim_step.py --shape gpt2         # GPT-2 124M shapes (148 tensors, 124.4M params)
    python benchmarks/optim_step.py --out optim_step_cpu.md
    python benchmarks/optim_step.py --chunk-sweep --only lamb,lars,nadam   # CPU foreach chunk sizes side by side

For each optimizer: gradients are re-assigned before every step (some libraries consume them), the
first `WARMUP` steps are untimed (state allocation, compilation, steepest's CPU chunk-size measurement, and RAdam's
warm-up: while rho_t <= 5, t <= 5 at beta2 = 0.999, some implementations skip the update), then the median of `--repeats` timed steps
(CUDA events on a GPU) is reported with its ratio to the memory-bandwidth limit: the bytes the
update must move per parameter (reads + writes of weights, gradient and state, fp32) times the
parameter count, divided by the copy bandwidth measured in the same run. The check column says
whether the timed steps changed the parameters. Peers that are not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, median, report, timed  # noqa: E402

import steepest.optim as so  # noqa: E402
from steepest.optim import base as optim_base  # noqa: E402
from steepest.optim.base import StepwiseOptimizer  # noqa: E402


def gpt2_shapes(d: int = 768, vocab: int = 50257, ctx: int = 1024, layers: int = 12) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


# bytes per parameter a minimal implementation must move (fp32): reads + writes
BYTES = {"sgd": 12, "momentum": 20, "momentum-ema": 20, "nesterov": 20, "adagrad": 20, "rmsprop": 20, "adadelta": 28,
         "adam": 28, "amsgrad": 36, "adamw": 28, "nadam": 28, "radam": 28, "lars": 28, "lamb": 36, "lion": 20, "novograd": 24,
         "ranger": 36, "rangerlars": 44}
OURS = {"momentum-ema": ("momentum", {"ema": True})}
LARGE_LR = {"lars": 1.0}
WARMUP = 10  # untimed steps per implementation: RAdam rectifies from step 6 on (beta2 = 0.999); steepest's CPU chunk tuner decides by step 8


def candidates(device: torch.device, compile_ours: bool, lr: float = 1e-3) -> list[tuple[str, str, Callable]]:
    """(family, label, factory(params) -> optimizer)."""
    out: list[tuple[str, str, Callable]] = []
    for family in BYTES:
        name, extra = OURS.get(family, (family, {}))
        kwargs = {"lr": LARGE_LR.get(family, lr), **extra}
        out.append((family, f"steepest {family}", lambda p, n=name, k=kwargs: so.create(n, p, **k)))
        if compile_ours and device.type == "cpu" and isinstance(so.OPTIMIZERS.get(name).target, type) and \
                issubclass(so.OPTIMIZERS.get(name).target, StepwiseOptimizer):
            out.append((family, f"steepest {family} compiled", lambda p, n=name, k=kwargs: so.create(n, p, impl="compiled", **k)))
    out += [
        ("adamw", "torch AdamW foreach", lambda p: torch.optim.AdamW(p, lr=lr, foreach=True)),
        ("adamw", "torch AdamW fused", lambda p: torch.optim.AdamW(p, lr=lr, fused=True)),
        ("adam", "torch Adam fused", lambda p: torch.optim.Adam(p, lr=lr, fused=True)),
        ("radam", "torch RAdam foreach", lambda p: torch.optim.RAdam(p, lr=lr, foreach=True)),
        ("nadam", "torch NAdam foreach", lambda p: torch.optim.NAdam(p, lr=lr, foreach=True)),
        ("sgd", "torch SGD fused", lambda p: torch.optim.SGD(p, lr=lr, fused=True)),
        ("momentum", "torch SGD(momentum) fused", lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, fused=True)),
    ]
    peers = [
        ("pytorch_optimizer", [("lion", "Lion", {}), ("lamb", "Lamb", {}), ("lars", "LARS", {"lr": 1.0}), ("novograd", "NovoGrad", {}),
                               ("ranger", "Ranger", {}), ("adamw", "AdamW", {}), ("radam", "RAdam", {}), ("nadam", "NAdam", {}),
                               ("rmsprop", "RMSprop", {}), ("adadelta", "AdaDelta", {}), ("adam", "Adam", {})]),
        ("lion_pytorch", [("lion", "Lion", {})]),
        ("heavyball", [("adamw", "AdamW", {}), ("nadam", "NAdam", {}), ("rmsprop", "RMSprop", {})]),
    ]
    if device.type == "cuda":  # timm's optimizers are compared on the GPU only
        peers.append(("timm.optim", [("lamb", "Lamb", {}), ("lars", "Lars", {"lr": 1.0}), ("lion", "Lion", {}), ("nadam", "NAdamW", {})]))
    for module, entries in peers:
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # missing or broken install: note and skip
            print(f"skipping {module}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}", file=sys.stderr)
            continue
        for family, cls_name, kw in entries:
            cls = getattr(mod, cls_name, None)
            if cls is not None:
                out.append((family, f"{module.split('.')[0]} {cls_name}", lambda p, c=cls, k={"lr": lr, **kw}: c(p, **k)))
    return out


def copy_bandwidth(device: torch.device, numel: int, repeats: int) -> float:
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = median([timed(lambda: dst.copy_(src), device) for _ in range(repeats)])
    return 2 * numel * 4 / t


def bench_family(factories: list[Callable], base: list[torch.Tensor], grads: list[torch.Tensor], device: torch.device,
                 repeats: int, warmup: int = WARMUP) -> list[tuple[float, bool] | Exception]:
    """Time one family's implementations round-robin (each repeat steps every implementation once), so
    a noisy machine slows them alike. Gradients are re-assigned before every step; the first `WARMUP`
    steps are untimed (state allocation, kernel selection, compilation, RAdam's unrectified steps), and
    "changed" compares the first tensor before and after the timed steps."""
    runs: list[Any] = []
    for factory in factories:
        params = [b.clone().to(device).requires_grad_(True) for b in base]
        try:
            opt = factory(params)
            for _ in range(warmup):
                assign(params, grads)
                opt.step()
            runs.append((opt, params, params[0].detach().clone(), []))
        except Exception as exc:
            runs.append(exc)
    for _ in range(repeats):
        for run in runs:
            if isinstance(run, Exception):
                continue
            opt, params, _, times = run
            assign(params, grads)
            times.append(timed(opt.step, device))
    return [run if isinstance(run, Exception) else (median(run[3]), not torch.equal(run[2], run[1][0].detach())) for run in runs]


def muon_rows(shapes: list[tuple[int, ...]], device: torch.device, repeats: int) -> list[str]:
    """Muon on the hidden matrices (2-D, not the embeddings): not bandwidth-bound (5 Newton-Schulz
    iterations of matrix products per matrix), so reported in ms only."""
    hidden = [s for s in shapes[2:] if len(s) == 2]
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(s, generator=g) * 0.02 for s in hidden]
    grads = [(torch.randn(s, generator=g) * 1e-3).to(device) for s in hidden]
    entries = [("steepest muon (MuonAdamW)", lambda p: so.create("muon", p, group_params=False, lr=0.02)),
               ("torch.optim.Muon", lambda p: torch.optim.Muon(p, lr=0.02))]
    # compute-bound and slow on a CPU (~0.2-1 s a step at 2 threads): 2 untimed steps and 3 timed there
    cpu = device.type == "cpu"
    results = bench_family([f for _, f in entries], base, grads, device, min(repeats, 3) if cpu else repeats, warmup=2 if cpu else WARMUP)
    rows = [f"Muon on {len(hidden)} hidden matrices ({sum(torch.Size(s).numel() for s in hidden) / 1e6:.1f}M parameters):", "",
            "| implementation | ms/step | params changed |", "|---|---|---|"]
    for (label, _), result in zip(entries, results):
        if isinstance(result, Exception):
            rows.append(f"| {label} | failed: {type(result).__name__} | |")
        else:
            rows.append(f"| {label} | {result[0] * 1e3:.2f} | {result[1]} |")
        print(rows[-1], flush=True)
    return rows


class WithChunk:
    """An optimizer whose CPU foreach steps run in chunks of `numel` elements (the module-wide
    setting is switched around each step, so chunk sizes can be timed round-robin in one run)."""

    def __init__(self, optimizer: torch.optim.Optimizer, numel: int):
        self.optimizer, self.numel = optimizer, numel

    def step(self) -> None:
        saved = optim_base.CPU_CHUNK_NUMEL, optim_base.CPU_CHUNK_TUNE
        optim_base.CPU_CHUNK_NUMEL, optim_base.CPU_CHUNK_TUNE = self.numel, False  # this size, not the tuner's
        try:
            self.optimizer.step()
        finally:
            optim_base.CPU_CHUNK_NUMEL, optim_base.CPU_CHUNK_TUNE = saved


def chunk_sweep(families: list[str], base: list[torch.Tensor], grads: list[torch.Tensor], repeats: int) -> list[str]:
    """steepest's foreach step of each family at chunk sizes 2^13..2^20 and unchunked, round-robin;
    the size this machine's L2 cache selects (cpu_chunk_numel) is marked."""
    chosen = optim_base.CPU_CHUNK_NUMEL
    sizes = [1 << k for k in range(13, 21)] + [1 << 40]
    rows = [f"foreach chunk size (elements) on the CPU; this machine's L2 cache: {optim_base.l2_cache_bytes()} bytes, "
            f"chosen {chosen} (* below)", "", "| family | " + " | ".join("all" if n == 1 << 40 else f"2^{n.bit_length() - 1}" + ("*" if n == chosen else "")
                                                                     for n in sizes) + " | best / chosen |",
            "|---|" + "---|" * (len(sizes) + 1)]
    for family in families:
        name, extra = OURS.get(family, (family, {}))
        kwargs = {"lr": LARGE_LR.get(family, 1e-3), **extra}
        factories = [lambda p, n=n, name=name, kw=kwargs: WithChunk(so.create(name, p, impl="foreach", **kw), n) for n in sizes]
        results = bench_family(factories, base, grads, torch.device("cpu"), repeats)
        ms = [r[0] * 1e3 if not isinstance(r, Exception) else float("nan") for r in results]
        at_chosen = ms[sizes.index(chosen)] if chosen in sizes else float("nan")
        rows.append(f"| {family} | " + " | ".join(f"{m:.1f}" for m in ms) + f" | {min(ms) / at_chosen:.2f} |")
        print(rows[-1], flush=True)
    return rows


def assign(params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=["gpt2", "gpt2-small-cpu"], default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated families to run (e.g. adamw,lion)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU (1 on a shared machine)")
    parser.add_argument("--compile", action="store_true", help="on the CPU, also time impl='compiled' (minutes of compilation)")
    parser.add_argument("--chunk-sweep", action="store_true",
                        help="CPU only: time steepest's foreach steps of --only families (default lamb,lars) at each chunk size")
    parser.add_argument("--out", help="results file under benchmarks/results/")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = args.shape or ("gpt2" if device.type == "cuda" else "gpt2-small-cpu")
    shapes = gpt2_shapes() if shape == "gpt2" else gpt2_shapes(d=256, vocab=8192, ctx=256)
    repeats = args.repeats or (20 if device.type == "cuda" else 5)
    n = sum(torch.Size(s).numel() for s in shapes)
    bw = copy_bandwidth(device, 32 * 2**20, repeats)
    g = torch.Generator(device="cpu").manual_seed(0)
    base = [torch.randn(s, generator=g) * 0.02 for s in shapes]
    grads = [(torch.randn(s, generator=g) * 1e-3).to(device) for s in shapes]
    only = {f for f in args.only.split(",") if f}
    if args.chunk_sweep:
        if device.type != "cpu":
            parser.error("--chunk-sweep is for the CPU (chunks are not used on a GPU)")
        families = sorted(only or {"lamb", "lars"})
        lines = [f"# CPU foreach chunk sizes: {len(shapes)} tensors, {n / 1e6:.1f}M fp32 parameters ({shape})", "", header(device),
                 f"ms per step, median of {repeats} steps after {WARMUP} untimed, sizes timed round-robin", "",
                 *chunk_sweep(families, base, grads, repeats)]
        report(lines, args.out)
        return
    families: dict[str, list[tuple[str, Callable]]] = {}
    for family, label, factory in candidates(device, args.compile):
        if not only or family in only:
            families.setdefault(family, []).append((label, factory))
    rows = []
    for family, entries in families.items():
        results = bench_family([f for _, f in entries], base, grads, device, repeats)
        limit = BYTES[family] * n / bw
        for (label, _), result in zip(entries, results):
            if isinstance(result, Exception):
                print(f"{label}: failed ({type(result).__name__}: {str(result).splitlines()[0][:120]})", file=sys.stderr)
                continue
            t, changed = result
            rows.append((family, label, t * 1e3, t / limit, changed))
            print(f"{label:<36} {t * 1e3:9.2f} ms  {t / limit:6.2f}x limit  changed={changed}", flush=True)
    lines = [f"# Optimizer step: {len(shapes)} tensors, {n / 1e6:.1f}M fp32 parameters ({shape})", "", header(device),
             f"copy bandwidth {bw / 1e9:.1f} GB/s; median of {repeats} steps after {WARMUP} untimed; ratio = step time / (bytes per parameter x parameters / bandwidth)", "",
             "| family | implementation | ms/step | x bandwidth limit | params changed |", "|---|---|---|---|---|"]
    for family, label, ms, ratio, changed in sorted(rows, key=lambda r: (r[0], r[2])):
        lines.append(f"| {family} | {label} | {ms:.2f} | {ratio:.2f} | {changed} |")
    if (not only or "muon" in only) and hasattr(torch.optim, "Muon"):
        lines += ["", *muon_rows(shapes, device, repeats)]
    report(lines, args.out)


if __name__ == "__main__":
    main()
