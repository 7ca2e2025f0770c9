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
from pathlib import Path

from steepest.errors import ConfigError, DataError, SteepestError

LR = 2e-3
DPO_LR = 1e-3  # lower: with Adam, DPO keeps taking full-size steps once the pairs are separated, and at 2e-3 that
# soon pushes down the tokens after the first (greedy answers like "yyyy"; measured on the demo data, 10 seeds)


def _check_flags(args) -> None:
    """Numbers a stage cannot run with, as one-line errors naming the flag (the architecture flags are checked
    with the architecture: files.check_arch)."""
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.max_len is not None and args.max_len < 2:
        raise ConfigError(f"--max-len must be at least 2 (bos and one token), got {args.max_len}")
    for flag, value in (("--lr", args.lr), ("--beta", args.beta)):
        if value is not None and (not value > 0 or value == float("inf")):
            raise ConfigError(f"{flag} must be a positive number, got {value}")
    if args.lora < 0:
        raise ConfigError(f"--lora must be a rank of 1 or more (0: no LoRA), got {args.lora}")


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


def check_run_dir(run_dir: Path, source: str | None, overwrite: bool) -> None:
    """An alignment stage never writes over another run's model without being told to, and never
    over the model it starts from (that is also DPO's frozen reference)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SteepestError(f"--run-dir {run_dir} is a file; give a folder")
    if source is not None and run_dir.resolve() == Path(source).resolve():
        raise SteepestError(f"--run-dir {run_dir} is the --from run: the stage would replace the model it starts from; "
                            "give another --run-dir")
    if (run_dir / "lm.json").exists() and not overwrite:
        raise SteepestError(f"{run_dir} already holds an alignment run (lm.json); replace it with --overwrite or choose another --run-dir")


def align(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from steepest.align.data import prompt_text
    from steepest.align.files import (
        exact_matches,
        hidden_size,
        load_lm,
        new_lm,
        pair_accuracy,
        read_jsonl,
        read_pairs,
        save_lm,
        tokenizer_for,
        write_bbc_topics,
        write_demo_data,
    )
    from steepest.align.pipeline import fit_dpo, fit_reward_model, fit_sft, generate

    _check_flags(args)
    if args.stage == "demo-data":
        print(write_bbc_topics(args.data, seed=args.seed) if args.source_data == "bbc_news" else write_demo_data(args.data))
        return 0
    if args.stage == "eval":
        if bool(args.source) == bool(args.model):
            raise SteepestError("steepest align eval needs --from RUN_DIR or --model NAME (the model to evaluate)")
        lm, arch = load_lm(args.source) if args.source else new_lm(args)
        rows = read_jsonl(args.data, ("instruction", "output"))
        right = exact_matches(lm, tokenizer_for(arch), rows, args.max_new_tokens)
        print(f"exact-match accuracy {right / len(rows):.3f} ({right}/{len(rows)} answers)")
        return 0
    if args.stage == "generate":
        lm, arch = load_lm(args.data)
        tok = tokenizer_for(arch)
        prompt = prompt_text({"instruction": args.prompt, "input": args.input}, tok) if not args.raw else args.prompt
        print(generate(lm, tok, prompt, args.max_new_tokens))
        return 0
    if not args.run_dir:
        raise SteepestError(f"steepest align {args.stage} needs --run-dir DIR (where the model is written)")
    if args.source and args.model:
        raise SteepestError("give --from RUN_DIR (continue a stage's model) or --model NAME (start from a pretrained one), not both")
    check_run_dir(Path(args.run_dir), args.source, args.overwrite)
    lm, arch = load_lm(args.source) if args.source else new_lm(args)
    if args.max_len and arch.get("pretrained"):
        arch["max_len"] = args.max_len  # the longest sample, not the network's size
    elif args.max_len and args.max_len > arch["max_len"]:
        raise ConfigError(f"--max-len {args.max_len} is more than the model's {arch['max_len']} positions; "
                          f"give at most {arch['max_len']}")
    max_len = args.max_len or arch["max_len"]
    tok = tokenizer_for(arch)
    lr = args.lr if args.lr is not None else (DPO_LR if args.stage == "dpo" else LR)
    fit = dict(max_len=max_len, lr=lr, max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
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
            accuracy = pair_accuracy(model, pairs, tok, max_len)
            print(f"reward model ranks {accuracy:.1%} of the training pairs correctly")
    except ValueError as exc:  # a sample longer than max_len
        raise DataError(str(exc)) from None
    print(f"wrote {args.run_dir}")
    return 0


def align_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--run-dir", help="where to write the trained model (a new folder, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the alignment run already in --run-dir")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {LR:g}; {DPO_LR:g} for dpo)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--beta", type=float, default=0.5, help="dpo: the KL strength beta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-model", dest="d_model", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff", type=int, default=128)
    p.add_argument("--max-len", dest="max_len", type=int, default=None,
                   help="longest sample in tokens (default 128 for the byte-level model, 512 for --model)")
