"""`steepest align`: instruction tuning, reward models and DPO from JSONL files.

    steepest align sft instructions.jsonl --run-dir runs/sft          # {"instruction", "input"?, "output"} per line
    steepest align dpo pairs.jsonl --from runs/sft --run-dir runs/dpo  # {"prompt" | "instruction"+"input"?, "chosen", "rejected"}
    steepest align reward pairs.jsonl --from runs/sft --run-dir runs/rm
    steepest align generate runs/dpo "Is the review positive?" --input "good fine nice"
    steepest align demo-data data/                                     # a small sentiment task to try it on

A run directory holds `lm.safetensors` and `lm.json` (the architecture), so a later stage starts
from it with --from; the reward model adds `reward_head.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_file, save_model

from steepest.errors import CheckpointError, DataError, SteepestError

ARCH_KEYS = ("d_model", "heads", "layers", "ff", "max_len")


def read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict]:
    """One JSON object per line, each with the `required` keys (string values); blank lines skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line")
        missing = [k for k in required if not isinstance(row.get(k), str)]
        if missing:
            raise DataError(f"{path}:{number}: needs string field(s) {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no samples")
    return rows


def read_pairs(path: str | Path) -> list[tuple[str, str, str]]:
    from steepest.align.data import format_prompt

    rows = read_jsonl(path, ("chosen", "rejected"))
    pairs = []
    for number, row in enumerate(rows, 1):
        if isinstance(row.get("prompt"), str):
            prompt = row["prompt"]
        elif isinstance(row.get("instruction"), str):
            prompt = format_prompt(row)
        else:
            raise DataError(f"{path}: sample {number} needs a 'prompt' or an 'instruction'")
        pairs.append((prompt, row["chosen"], row["rejected"]))
    return pairs


def _new_lm(args):
    from steepest.align.tokens import ByteTokenizer
    from steepest.models.transformer import CausalLM

    arch = {k: getattr(args, k) for k in ARCH_KEYS}
    torch.manual_seed(args.seed)
    return CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **arch), arch


def load_lm(run_dir: str | Path):
    from steepest.align.tokens import ByteTokenizer
    from steepest.models.transformer import CausalLM

    run = Path(run_dir)
    if not (run / "lm.json").exists() or not (run / "lm.safetensors").exists():
        raise CheckpointError(f"{run} has no lm.json / lm.safetensors; give a run directory written by steepest align")
    arch = json.loads((run / "lm.json").read_text())
    lm = CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **{k: arch[k] for k in ARCH_KEYS})
    try:
        load_model(lm, str(run / "lm.safetensors"))  # tied embeddings are stored once
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{run / 'lm.safetensors'} does not load ({str(exc).splitlines()[0][:160]})") from None
    return lm, arch


def save_lm(lm, arch: dict, run_dir: str | Path, stage: str, metrics: dict) -> None:
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    save_model(lm, str(run / "lm.safetensors"))  # handles the tied embedding/output weight
    (run / "lm.json").write_text(json.dumps({**arch, "stage": stage, **metrics}, indent=2))


def cmd_align(args: argparse.Namespace) -> int:
    from steepest.align.pipeline import fit_dpo, fit_reward_model, fit_sft, generate
    from steepest.align.tokens import ByteTokenizer

    tok = ByteTokenizer()
    if args.stage == "demo-data":
        print(write_demo_data(args.data))
        return 0
    if args.stage == "generate":
        from steepest.align.data import format_prompt

        lm, _ = load_lm(args.data)
        prompt = format_prompt({"instruction": args.prompt, "input": args.input}) if not args.raw else args.prompt
        print(generate(lm, tok, prompt, args.max_new_tokens))
        return 0
    if not args.run_dir:
        raise SteepestError(f"steepest align {args.stage} needs --run-dir DIR (where the model is written)")
    lm, arch = load_lm(args.source) if args.source else _new_lm(args)
    fit = dict(max_len=arch["max_len"], lr=args.lr, max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    try:
        if args.stage == "sft":
            trainer = fit_sft(lm, read_jsonl(args.data, ("instruction", "output")), tok, **fit)
            save_lm(lm, arch, args.run_dir, "sft", {"steps": trainer.state.step})
        elif args.stage == "dpo":
            if not args.source:
                raise SteepestError("steepest align dpo needs --from RUN_DIR (the SFT model, also the frozen reference)")
            trainer = fit_dpo(lm, read_pairs(args.data), tok, beta=args.beta, **fit)
            save_lm(lm, arch, args.run_dir, "dpo", {"steps": trainer.state.step, "beta": args.beta})
        else:
            pairs = read_pairs(args.data)
            model = fit_reward_model(lm, arch["d_model"], pairs, tok, **fit)
            save_lm(lm, arch, args.run_dir, "reward", {})
            save_file({k: v.contiguous() for k, v in model.score.state_dict().items()}, str(Path(args.run_dir) / "reward_head.safetensors"))
            accuracy = _pair_accuracy(model, pairs, tok, arch["max_len"])
            print(f"reward model ranks {accuracy:.1%} of the training pairs correctly")
    except ValueError as exc:  # a sample longer than max_len
        raise DataError(str(exc)) from None
    print(f"wrote {args.run_dir}")
    return 0


@torch.no_grad()
def _pair_accuracy(model, pairs, tok, max_len) -> float:
    from steepest.align.data import pair_tensors

    ids, _ = pair_tensors(pairs, tok, max_len)
    scores = model.eval()(ids)
    return float((scores[:, 0] > scores[:, 1]).float().mean())


POSITIVE = ["good", "great", "fine", "happy", "nice", "love", "superb", "warm"]
NEGATIVE = ["bad", "awful", "sad", "poor", "hate", "ugly", "dull", "cold"]


def write_demo_data(folder: str | Path, n: int = 300, seed: int = 0) -> str:
    """instructions.jsonl (answers half wrong, as if labelled carelessly) and pairs.jsonl (correct
    preferences): SFT then DPO on them shows DPO repairing a model trained on noisy labels."""
    rng = random.Random(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    instructions, pairs = [], []
    for _ in range(n):
        positive = rng.random() < 0.5
        text = " ".join(rng.choice(POSITIVE if positive else NEGATIVE) for _ in range(3))
        right, wrong = ("yes", "no") if positive else ("no", "yes")
        row = {"instruction": "Is the review positive?", "input": text}
        instructions.append({**row, "output": right if rng.random() < 0.5 else wrong})
        pairs.append({**row, "chosen": right, "rejected": wrong})
    (out / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return f"wrote {out / 'instructions.jsonl'} and {out / 'pairs.jsonl'} ({n} samples each)"


def add_commands(sub) -> dict:
    p = sub.add_parser("align", help="instruction tuning (sft), reward model, DPO and generation for a byte-level causal LM")
    p.add_argument("stage", choices=["sft", "reward", "dpo", "generate", "demo-data"])
    p.add_argument("data", help="JSONL file (sft/reward/dpo), run directory (generate) or output folder (demo-data)")
    p.add_argument("prompt", nargs="?", default="", help="generate: the instruction (or the whole prompt with --raw)")
    p.add_argument("--input", default="", help="generate: the instruction's input")
    p.add_argument("--raw", action="store_true", help="generate: use the prompt as given, without the instruction template")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--from", dest="source", help="start from the model in this run directory")
    p.add_argument("--run-dir", help="where to write the trained model")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--beta", type=float, default=0.5, help="dpo: the KL strength beta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-model", dest="d_model", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff", type=int, default=128)
    p.add_argument("--max-len", dest="max_len", type=int, default=128)
    return {"align": cmd_align}
