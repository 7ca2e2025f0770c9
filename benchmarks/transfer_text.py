"""Transfer learning on real text: the pretrained all-MiniLM-L6-v2 fine-tuned on 100 BBC News articles,
against a linear probe on its frozen features and the same network trained from random weights.

    python benchmarks/transfer_text.py --seeds 0 1 2 --out transfer_text_cpu.md

Every arm is the bundled recipe `bbc_news_minilm` (same tokenizer, split, training articles and step
budget) with one change; the figure is test accuracy on the held-out articles.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.config import load_recipe  # noqa: E402
from steepest.data import load_data  # noqa: E402
from steepest.run import build_run  # noqa: E402

ARMS = {
    "fine-tuned (all weights)": [],
    "linear probe (frozen encoder)": ["finetune={freeze: all_but_head}", "optimizer.lr=1e-2"],
    "from scratch (same network)": ["model.from_scratch=true", "optimizer.lr=5e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", help="file name under benchmarks/results/")
    args = parser.parse_args()
    data = load_data(load_recipe("bbc_news_minilm", []).data)
    scores: dict[str, list[float]] = {arm: [] for arm in ARMS}
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        for arm, sets in ARMS.items():
            started = time.perf_counter()
            run = build_run(load_recipe("bbc_news_minilm", [*sets, f"trainer.seed={seed}"]), None, data=data, console=False)
            run.trainer.fit()
            scores[arm].append(run.trainer.evaluate("test")["test_accuracy"])
            seconds[arm].append(time.perf_counter() - started)
            print(f"seed {seed} {arm}: {scores[arm][-1]:.3f} ({seconds[arm][-1]:.0f} s)", flush=True)
    lines = [f"# Text transfer learning: BBC News, {data.info.sizes['train']} training articles, all-MiniLM-L6-v2", "",
             header(torch.device("cpu")), f"test articles: {data.info.sizes['test']}; seeds {args.seeds}; recipe bbc_news_minilm", "",
             "| arm | test accuracy per seed | mean | seconds per run |", "|---|---|---|---|"]
    for arm in ARMS:
        per_seed = " / ".join(f"{s:.3f}" for s in scores[arm])
        lines.append(f"| {arm} | {per_seed} | {statistics.mean(scores[arm]):.3f} | {statistics.mean(seconds[arm]):.0f} |")
    report(lines, args.out)


if __name__ == "__main__":
    main()
