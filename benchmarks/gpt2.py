"""GPT-2 124M training speed: a raw hand-written compiled loop vs steepest's Trainer, tokens/s and MFU.

    python benchmarks/gpt2.py --device cuda                 # GPT-2 124M, bf16: benchmarks/results/gpt2_gpu.md
    python benchmarks/gpt2.py --device cpu --quick          # a tiny GPT-2, fp32: checks the script end to end

The token file must exist first (the GPU machine has no network and no tokenizer to run): on the CPU
side, `python -m steepest.data.corpus --out .data/bbc_news-smollm2` (BBC News through SmolLM2's
tokenizer: 1,139,491 tokens, vocabulary 49,152, 2.3 MB), and carry `.data/` (an ignored folder) to
the GPU machine; `--tokens` names another file or folder.

Both paths train the same model from the same initialization (seeded) on the same windows in the
same order: `gpt2_124m` (12 layers, 12 heads, 768 wide, 1024 positions, the token file's vocabulary)
under bf16 autocast, `torch.compile` of the model, fused AdamW (lr 6e-4, betas 0.9/0.95, weight decay
0.1 on the matrices and embeddings only), gradient clipping at 1.0, SDPA attention (flash kernels on
the GPU), batch `--batch` windows of 1024 + 1 tokens drawn at random from the first 90% of the stream
and held on the device. (a) raw: the nanoGPT-style loop written out below; (b) trainer: steepest's
Trainer (DeviceLoader over the same windows, TrainerOptions(precision="bf16", clip_norm=1.0), the
`next_token` loss, its default non-finite check and logging every 10 steps). In both the loss (the
logits' cross-entropy, in float32) is compiled apart from the model. The first `--warmup`
steps of each (compilation included) are untimed; their wall time is reported as compile time
(the second path compiles the same graphs again, partly from the first's in-process caches). Then
`--steps` steps are timed (perf_counter between device synchronizations).

MFU = tokens/s x model FLOPs per token / the device's peak dense bf16 FLOP/s. FLOPs per token:
6 N + 12 n_layer n_embd T (N the parameters less the position table, T the context), the estimate of
Kaplan et al. 2020 and Chinchilla (Hoffmann et al. 2022, appendix F) as nanoGPT's `estimate_mfu`
computes it; attention's causal half is not discounted. Peaks (dense, no sparsity), from NVIDIA's
data sheets: H100 SXM 989 TFLOP/s, H100 NVL 835, H100 PCIe 756 (H100 Tensor Core GPU data sheet),
H200 989 (H200 data sheet: 1,979 with sparsity), A100 312 (A100 data sheet). Other devices: no MFU.

On a CUDA out-of-memory error the batch is halved and the run repeated (said in the results). The
results file is written only for `--device cuda` (or with `--out`): CPU figures are not GPU ones.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.data import DeviceLoader  # noqa: E402
from steepest.data.tokens import find_token_file, open_tokens, random_starts, read_token_meta  # noqa: E402
from steepest.losses.language import NextToken  # noqa: E402
from steepest.models import MODELS  # noqa: E402
from steepest.optim import create  # noqa: E402
from steepest.training.events import Callback  # noqa: E402
from steepest.training.trainer import Trainer, TrainerOptions  # noqa: E402

PEAK_BF16 = (("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0
QUICK = dict(n_layer=2, n_head=2, n_embd=64, block_size=64)  # --quick: a tiny GPT-2 (the token file's vocabulary)


def peak_flops(device: torch.device) -> float | None:
    """Peak dense bf16 FLOP/s of a known GPU (None: unknown, or a CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def make_model(config: dict, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    return MODELS.build("gpt2", **config).to(device)


def make_windows(tokens_path: Path, block_size: int, count: int, device: torch.device, seed: int = 0):
    """`count` random windows of block_size + 1 tokens from the first 90% of the stream, on the device:
    inputs x and next tokens y, (count, block_size) int64 each."""
    tokens = open_tokens(tokens_path)
    starts = np.sort(random_starts(0, int(len(tokens) * 0.9), block_size, count, seed))  # sorted: one pass over the file
    w = torch.from_numpy(tokens[starts[:, None] + np.arange(block_size + 1)].astype(np.int64))
    w = w[torch.randperm(count, generator=torch.Generator().manual_seed(seed))]
    return w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_loop(model, x, y, batch: int, warmup: int, steps: int, precision: str, device: torch.device) -> dict:
    """The hand-written loop: (compile + warm-up seconds, timed seconds, last loss)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, fused=True)
    compiled = torch.compile(model)
    vocab = model.vocab_size

    @torch.compile
    def lm_loss(logits, targets):  # compiled apart from the model, as the Trainer's loss is
        return F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1))

    dtype = torch.bfloat16 if precision == "bf16" else None
    started = time.perf_counter()
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        xb, yb = x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = lm_loss(compiled(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
    synchronize(device)
    end = time.perf_counter()
    return {"compile_s": t0 - started, "seconds": end - t0, "loss": float(loss.detach())}


class StepTimer(Callback):
    """Wall time from fit start to the end of step `warmup` (compile + warm-up) and from there to the end."""

    name = "step_timer"

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device = warmup, device
        self.started = self.t0 = self.t1 = 0.0

    def on_fit_start(self, trainer) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, trainer, output) -> None:
        if trainer.state.step == self.warmup:
            synchronize(self.device)
            self.t0 = time.perf_counter()

    def on_fit_end(self, trainer) -> None:
        synchronize(self.device)
        self.t1 = time.perf_counter()


def trainer_loop(model, x, y, batch: int, warmup: int, steps: int, precision: str, device: torch.device,
                 skip_nonfinite: bool = True) -> dict:
    """The same training through steepest's Trainer."""
    opt = create("adamw", model, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)  # fused, no decay on 1-d parameters
    timer = StepTimer(warmup, device)
    options = TrainerOptions(max_steps=warmup + steps, precision=precision, clip_norm=CLIP, skip_nonfinite=skip_nonfinite)
    last = LastLoss()
    trainer = Trainer(torch.compile(model), opt, torch.compile(NextToken()), DeviceLoader(x, y, batch, shuffle=False), options=options,
                      callbacks=[timer, last])
    trainer.fit()
    return {"compile_s": timer.t0 - timer.started, "seconds": timer.t1 - timer.t0, "loss": last.loss}


class LastLoss(Callback):
    name = "last_loss"
    loss = math.nan

    def on_step_end(self, trainer, output) -> None:
        self.output = output

    def on_fit_end(self, trainer) -> None:
        self.loss = float(self.output.loss)


PATHS = {
    "raw": ("raw compiled loop (hand-written)", raw_loop),
    "trainer": ("steepest Trainer", trainer_loop),
    "trainer_nocheck": ("steepest Trainer, skip_nonfinite off", lambda *a: trainer_loop(*a, skip_nonfinite=False)),
}


def bench(args, device: torch.device, tokens_path: Path, config: dict, batch: int) -> list[dict]:
    x, y = make_windows(tokens_path, config["block_size"], batch * (args.warmup + args.steps), device, args.seed)
    rows = []
    for key in args.paths.split(","):
        label, fn = PATHS[key]
        model = make_model(config, device, args.seed)
        out = fn(model, x, y, batch, args.warmup, args.steps, args.precision, device)
        tokens = batch * config["block_size"] * args.steps
        rows.append({"path": key, "label": label, **out, "ms_per_step": out["seconds"] / args.steps * 1e3,
                     "tokens_per_s": tokens / out["seconds"], "flops_per_token": model.flops_per_token(),
                     "parameters": model.num_parameters()})
        print(f"  {label}: compile+warm-up {out['compile_s']:.1f} s, {rows[-1]['ms_per_step']:.1f} ms/step, "
              f"{rows[-1]['tokens_per_s']:,.0f} tokens/s, last loss {out['loss']:.4f}", flush=True)
        del model, fn
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny GPT-2 (2 layers, 64 wide, 64 positions): checks the script")
    parser.add_argument("--tokens", default=".data/bbc_news-smollm2", help="token file or folder (python -m steepest.data.corpus)")
    parser.add_argument("--batch", type=int, default=None, help="windows per step (default 32 on CUDA, 4 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps, compilation included (default 5; 2 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 30; 5 with --quick)")
    parser.add_argument("--precision", default=None, choices=["bf16", "fp32"], help="default bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--paths", default="raw,trainer,trainer_nocheck", help=f"comma-separated: {', '.join(PATHS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="results file under benchmarks/results/ (default gpt2_gpu.md on CUDA only)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu --quick to check the script")
    args.warmup = args.warmup or (2 if args.quick else 5)
    args.steps = args.steps or (5 if args.quick else 30)
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    out = args.out or ("gpt2_gpu.md" if device.type == "cuda" and not args.quick else None)
    tokens_path = find_token_file(args.tokens)
    meta = read_token_meta(tokens_path)
    vocab = int(meta.get("vocab_size") or int(open_tokens(tokens_path).max()) + 1)
    config = {"vocab_size": vocab, **(QUICK if args.quick else {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024})}
    batch = args.batch or (4 if args.quick else 32 if device.type == "cuda" else 2)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast (the optimizer's are elementwise)
        torch.backends.cudnn.allow_tf32 = True
    print(f"{header(device)}\nGPT-2 {config}, batch {batch} x {config['block_size']} tokens, {args.precision}, "
          f"{args.warmup} warm-up + {args.steps} timed steps; tokens {tokens_path} ({meta.get('tokenizer', '?')})", flush=True)
    notes = []
    while True:
        try:
            rows = bench(args, device, tokens_path, config, batch)
            break
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            notes.append(f"batch {batch} ran out of memory; halved")
            print(notes[-1], flush=True)
            batch //= 2
            gc.collect()
            torch.cuda.empty_cache()
    peak = peak_flops(device)
    by_path = {r["path"]: r for r in rows}
    lines = ["# GPT-2 124M training speed: raw compiled loop vs steepest Trainer" if not args.quick else "# GPT-2 (tiny, --quick) training speed",
             "", header(device), "",
             f"Model: gpt2 {config} ({rows[0]['parameters']:,} parameters; {rows[0]['flops_per_token'] / 1e6:,.1f} MFLOP per token, "
             f"6N + 12 L C T). Data: {meta.get('corpus', tokens_path)} tokenized by {meta.get('tokenizer', '?')} "
             f"({meta.get('tokens', '?'):,} tokens), random windows of {config['block_size'] + 1}. Batch {batch} x {config['block_size']} "
             f"= {batch * config['block_size']:,} tokens per step, {args.precision}, torch.compile, fused AdamW, SDPA. "
             f"{args.warmup} untimed warm-up steps (compile included), then {args.steps} timed steps."
             + (f" Peak: {peak / 1e12:.0f} TFLOP/s dense bf16 (NVIDIA data sheet)." if peak else " MFU: no peak known for this device."),
             *(["", "Note: " + "; ".join(notes)] if notes else []), "",
             "| path | compile + warm-up s | ms/step | tokens/s | MFU | last loss |", "|---|---|---|---|---|---|"]
    for r in rows:
        mfu = f"{r['tokens_per_s'] * r['flops_per_token'] / peak:.1%}" if peak else "-"
        lines.append(f"| {r['label']} | {r['compile_s']:.1f} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} | {r['loss']:.4f} |")
    if "raw" in by_path:
        for key in ("trainer", "trainer_nocheck"):
            if key in by_path:
                lines.append(f"\n{by_path[key]['label']} / raw loop, time per step: {by_path[key]['seconds'] / by_path['raw']['seconds']:.3f}x")
    if peak and "raw" in by_path and "trainer" in by_path:
        mfu = by_path["trainer"]["tokens_per_s"] * by_path["trainer"]["flops_per_token"] / peak
        ratio = by_path["trainer"]["seconds"] / by_path["raw"]["seconds"]
        lines.append(f"\nGoals (issue 15): MFU >= 45%: {'met' if mfu >= 0.45 else 'not met'} ({mfu:.1%}, the Trainer); "
                     f"Trainer <= 1.01x the raw compiled loop: {'met' if ratio <= 1.01 else 'not met'} ({ratio:.3f}x).")
    report(lines, out)


if __name__ == "__main__":
    main()
