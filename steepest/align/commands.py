"""`steepest align`: instruction tuning, reward models, DPO and PPO from JSONL files.

    steepest align sft instructions.jsonl --run-dir runs/sft          # {"instruction", "input"?, "output"} per line
    steepest align dpo pairs.jsonl --from runs/sft --run-dir runs/dpo  # {"prompt" | "instruction"+"input"?, "chosen", "rejected"}
    steepest align reward pairs.jsonl --from runs/sft --run-dir runs/rm
    steepest align ppo prompts.jsonl --from runs/sft --reward runs/rm --run-dir runs/ppo   # {"prompt" | "instruction"+"input"?}
    steepest align generate runs/dpo "Is the review positive?" --input "good fine nice"
    steepest align demo-data data/                                     # a small sentiment task to try it on
    steepest align eval heldout.jsonl --from runs/dpo                  # exact-match accuracy of greedy answers

A pretrained Hugging Face model works the same way (its tokenizer and chat template included), with
LoRA adapters merged into the saved weights at the end of each stage:

    steepest align demo-data data/bbc --source-data bbc_news           # topic questions on real BBC News articles
    steepest align eval data/bbc/heldout.jsonl --model SmolLM2-135M-Instruct
    steepest align sft data/bbc/instructions.jsonl --model SmolLM2-135M-Instruct --lora 16 --lr 1e-3 --run-dir runs/smol

A run directory holds `lm.safetensors` and `lm.json` (the architecture), so a later stage starts
from it with --from; the reward model adds `reward_head.safetensors`, PPO `value_head.safetensors`, `ppo_log.csv`
(one row per step) and, in lm.json, what a later PPO run continues (beta, the reward normalization's moments, the
reference and reward runs): `steepest align ppo prompts.jsonl --from runs/ppo --reward runs/rm --run-dir runs/ppo2`
continues that PPO run (value head, normalization, beta, the same frozen reference) rather than starting afresh.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from steepest.errors import CheckpointError, ConfigError, DataError, SteepestError

LR = 2e-3
PPO_LR = 3e-4  # PPO takes ppo_epochs x (batch / minibatch) optimizer steps per rollout
PPO_BETA = 1.0  # in reward units: the demo's reward model scores about +-6; at 0.5 the policy found an answer the
# reward model overrates ('y', never in its pairs; KL 2-3 nats), at 1.0 it answers yes/no (measured, 4 seeds)
DPO_BETA = 0.5
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
    if args.reward_norm_samples < 2:
        raise ConfigError(f"--reward-norm-samples must be at least 2 (a standard deviation), got {args.reward_norm_samples}")
    for flag, value in (("--lr", args.lr), ("--beta", args.beta), ("--target-kl", args.target_kl), ("--clip", args.clip),
                        ("--value-clip", args.value_clip)):
        if value is not None and (not value > 0 or value == float("inf")):
            raise ConfigError(f"{flag} must be a positive number, got {value}")
    for flag, value in (("--steps", args.steps), ("--ppo-epochs", args.ppo_epochs), ("--minibatch-size", args.minibatch_size),
                        ("--kl-horizon", args.kl_horizon)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--gamma", args.gamma), ("--lam", args.lam)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{flag} must be between 0 and 1, got {value}")
    if not 0 <= args.vf_coef < float("inf"):
        raise ConfigError(f"--vf-coef must be 0 or more, got {args.vf_coef}")
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
    lr = args.lr if args.lr is not None else {"dpo": DPO_LR, "ppo": PPO_LR}.get(args.stage, LR)
    beta = args.beta if args.beta is not None else (PPO_BETA if args.stage == "ppo" else DPO_BETA)
    fit = dict(max_len=max_len, lr=lr, max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    try:
        if args.stage == "ppo":
            _ppo(args, lm, arch, tok, lr=lr, beta=beta, max_len=max_len)
        elif args.stage == "sft":
            _add_lora(lm, args)
            trainer = fit_sft(lm, read_jsonl(args.data, ("instruction", "output")), tok, **fit)
            save_lm(lm, arch, args.run_dir, "sft", {"steps": trainer.state.step})
        elif args.stage == "dpo":
            if not args.source and not args.model:
                raise SteepestError("steepest align dpo needs --from RUN_DIR (the SFT model, also the frozen reference) or --model NAME")
            pairs = read_pairs(args.data, tok)
            reference = copy.deepcopy(lm).eval()  # the policy as it starts, without adapters: the frozen reference
            _add_lora(lm, args)
            trainer = fit_dpo(lm, pairs, tok, reference=reference, beta=beta, **fit)
            save_lm(lm, arch, args.run_dir, "dpo", {"steps": trainer.state.step, "beta": beta})
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


def _ppo(args, lm, arch: dict, tok, *, lr: float, beta: float, max_len: int) -> None:
    """PPO against --reward's model from --from's (or --model's) policy; the policy as it starts is the reference.
    --from a PPO run continues it: its value head, beta (unless --beta), reward normalization (unless another
    --reward-norm or --reward) and the reference it recorded (unless --reference)."""
    import csv

    from steepest.align.files import hidden_size, load_reward_model, read_prompts, save_lm
    from steepest.align.ppo import (
        LOG_COLUMNS,
        VALUE_HEAD_FILE,
        PPOConfig,
        PPOState,
        RewardNormalizer,
        fit_ppo,
        load_value_head,
        new_value_head,
        save_value_head,
    )

    if not args.source and not args.model:
        raise SteepestError("steepest align ppo needs --from RUN_DIR (the SFT model, also the frozen reference) or --model NAME")
    if not args.reward:
        raise SteepestError("steepest align ppo needs --reward RUN_DIR (a run of steepest align reward)")
    run = Path(args.run_dir)
    for flag, other, what in (("--reward", args.reward, "reward model"), ("--reference", args.reference, "reference")):
        if other and run.resolve() == Path(other).resolve():
            raise SteepestError(f"--run-dir {args.run_dir} is the {flag} run: the policy would replace the {what}; "
                                "give another --run-dir")
    previous = arch if args.source and arch.get("stage") == "ppo" else {}  # the PPO run this one continues
    where = f"{Path(args.source or '.') / 'lm.json'}"
    prompts = read_prompts(args.data, tok)
    reward_model, reward_arch = load_reward_model(args.reward)
    if reward_arch.get("pretrained") != arch.get("pretrained"):
        name = lambda a: a.get("pretrained") or "the byte-level tokenizer"  # noqa: E731
        raise SteepestError(f"--reward {args.reward} reads {name(reward_arch)}'s tokens and the policy writes {name(arch)}'s; "
                            "train the reward model from the same model family")
    reference, recorded = _ppo_reference(args, lm, arch, previous, where, run)
    hidden = hidden_size(lm, arch)

    # what a PPO run continues: the value head, beta and the reward normalization's moments
    head_source = args.value_head or (args.source if previous else "new")
    if head_source == "new":
        value_head = new_value_head(lm, hidden)
    else:
        value_head = load_value_head(head_source, lm, hidden)
        print(f"value head from {Path(head_source) / VALUE_HEAD_FILE if Path(head_source).is_dir() else head_source}")
    if args.beta is None and previous:
        beta = previous.get("beta")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < float("inf"):
            raise CheckpointError(f"{where}: beta must be a positive number, got {beta!r}; give --beta")
        print(f"beta {beta:.4g} from {where}")
    saved_norm = RewardNormalizer.from_state_dict(previous["reward_norm"], where) if "reward_norm" in previous else None
    mode = args.reward_norm or (saved_norm.mode if saved_norm else "none")
    reward_run = str(Path(args.reward).resolve())
    if saved_norm is not None and saved_norm.mode == mode and previous.get("reward_run") == reward_run:
        normalizer = saved_norm
        if mode != "none":
            print(f"reward normalization '{mode}' continues from {where}: mean {normalizer.mean:.4g}, "
                  f"std {normalizer.var ** 0.5:.4g} over {normalizer.count} scores")
    else:
        normalizer = RewardNormalizer(mode)
        if saved_norm is not None and mode != "none" and saved_norm.mode == mode:
            print(f"reward normalization '{mode}' starts afresh: {where} was normalized for another reward model")
    fresh_initial = mode == "initial" and normalizer.count == 0
    state = PPOState(value_head, normalizer, beta)

    _add_lora(lm, args)
    config = PPOConfig(lr=lr, beta=beta, target_kl=args.target_kl, kl_horizon=args.kl_horizon, gamma=args.gamma,
                       lam=args.lam, clip=args.clip, value_clip=args.value_clip, vf_coef=args.vf_coef,
                       ppo_epochs=args.ppo_epochs, minibatch_size=args.minibatch_size or max(1, args.batch_size // 2),
                       max_new_tokens=args.max_new_tokens, max_len=max_len, reward_norm=mode,
                       reward_norm_samples=args.reward_norm_samples)
    run.mkdir(parents=True, exist_ok=True)
    total = args.steps or args.epochs * -(-len(prompts) // args.batch_size)
    every = max(1, total // 10)
    with open(run / "ppo_log.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS)
        writer.writeheader()

        def log(row: dict) -> None:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
            f.flush()
            if row["step"] == 1 and fresh_initial:
                print(f"reward normalization 'initial': mean {normalizer.mean:.4g}, std {normalizer.var ** 0.5:.4g} over "
                      f"{normalizer.count} completions of the starting policy")
            if row["step"] % every == 0 or row["step"] in (1, total):
                print(f"step {row['step']}/{total}: reward {row['reward']:.3f}  kl {row['kl']:.3f}  beta {row['beta']:.3g}  "
                      f"policy loss {row['policy_loss']:.4f}  value loss {row['value_loss']:.4f}  "
                      f"clip fraction {row['clip_fraction']:.3f}  ({row['seconds']:.0f} s)")

        history = fit_ppo(lm, reward_model, prompts, tok, hidden=hidden, reference=reference, config=config,
                          steps=total, batch_size=args.batch_size, seed=args.seed, state=state, log=log)
    last = history[-1]
    prior = previous.get("total_steps", previous.get("steps", 0))  # PPO steps of the runs this one continues
    prior = prior if isinstance(prior, int) and not isinstance(prior, bool) and prior >= 0 else 0
    save_value_head(state.value_head, run / VALUE_HEAD_FILE)
    save_lm(lm, arch, run, "ppo", {"steps": len(history), "total_steps": prior + len(history),
                                   "beta": state.beta, "reward": last["reward"], "kl": last["kl"],
                                   "reward_norm": normalizer.state_dict(), "reward_run": reward_run, "reference": recorded})
    print(f"mean reward of the rollouts {history[0]['reward']:.3f} at the first step, {last['reward']:.3f} at the last "
          f"(KL to the reference {last['kl']:.3f}); per step in {run / 'ppo_log.csv'}")


def _ppo_reference(args, lm, arch: dict, previous: dict, where: str, run: Path):
    """The frozen reference and how lm.json records it ({"run": folder} or {"model": name}): --reference's run, else
    the one the continued PPO run recorded, else the policy as it starts (before adapters)."""
    from steepest.align.files import load_lm

    recorded = previous.get("reference") if previous else None
    if args.reference:
        folder = args.reference
    elif recorded is not None:
        if not (isinstance(recorded, dict) and len(recorded) == 1 and isinstance(next(iter(recorded.values())), str)
                and next(iter(recorded)) in ("run", "model")):
            raise CheckpointError(f"{where}: reference must be {{\"run\": FOLDER}} or {{\"model\": NAME}}, got {recorded!r:.120}; "
                                  "give --reference RUN_DIR")
        if "model" in recorded:
            if recorded["model"] != arch.get("pretrained"):
                raise CheckpointError(f"{where}: the reference {recorded['model']} is not this policy's model "
                                      f"{arch.get('pretrained')}; give --reference RUN_DIR")
            from steepest.align.files import new_lm

            print(f"reference: {recorded['model']} (recorded in {where})")
            return new_lm(argparse.Namespace(model=recorded["model"], max_len=arch.get("max_len")))[0].eval(), recorded
        folder = recorded["run"]
        if not Path(folder).is_dir():
            raise CheckpointError(f"{where}: the reference run {folder} it recorded does not exist; give --reference RUN_DIR "
                                  "(the model the first PPO run started from)")
        print(f"reference: {folder} (recorded in {where})")
    else:
        start = {"run": str(Path(args.source).resolve())} if args.source else {"model": args.model}
        return copy.deepcopy(lm).eval(), start  # the policy as it starts, without adapters: the frozen reference
    if run.resolve() == Path(folder).resolve():
        raise SteepestError(f"--run-dir {args.run_dir} is the reference run: the policy would replace the reference; "
                            "give another --run-dir")
    reference, ref_arch = load_lm(folder)
    if ref_arch.get("pretrained") != arch.get("pretrained") or any(ref_arch.get(k) != arch.get(k) for k in ("d_model", "heads", "layers", "ff")):
        raise SteepestError(f"the reference {folder} is another model than the policy; give --reference the run the policy "
                            "came from")
    return reference.eval(), {"run": str(Path(folder).resolve())}


def align_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=["sft", "reward", "dpo", "ppo", "eval", "generate", "demo-data"])
    p.add_argument("data", help="JSONL file (sft/reward/dpo/ppo/eval), run directory (generate) or output folder (demo-data)")
    p.add_argument("prompt", nargs="?", default="", help="generate: the instruction (or the whole prompt with --raw)")
    p.add_argument("--input", default="", help="generate: the instruction's input")
    p.add_argument("--raw", action="store_true", help="generate: use the prompt as given, without the instruction template")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generate/eval: the longest answer; ppo: the longest completion")
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
    p.add_argument("--epochs", type=int, default=10, help="passes over the data (ppo: over the prompts)")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {LR:g}; {DPO_LR:g} for dpo, {PPO_LR:g} for ppo)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per step (ppo: prompts per rollout)")
    p.add_argument("--beta", type=float, default=None,
                   help=f"dpo: the KL strength beta (default {DPO_BETA:g}); ppo: the per-token KL penalty's weight, in the reward "
                        f"model's units (default {PPO_BETA:g}; the start value with --target-kl)")
    ppo = p.add_argument_group("ppo", "PPO against a reward model, a KL penalty to the starting model (Ouyang et al. 2022)")
    ppo.add_argument("--reward", help="the reward model's run directory (steepest align reward)")
    ppo.add_argument("--steps", type=int, default=None, help="rollout-and-update steps (default: --epochs passes over the prompts)")
    ppo.add_argument("--ppo-epochs", type=int, default=2, help="passes over each rollout batch (default 2)")
    ppo.add_argument("--minibatch-size", type=int, default=None, help="completions per optimizer step (default half --batch-size)")
    ppo.add_argument("--target-kl", type=float, default=None, help="adapt beta toward this KL per completion, in nats "
                     "(Ziegler et al. 2019; default: beta stays)")
    ppo.add_argument("--kl-horizon", type=int, default=10_000, help="completions over which the adaptive beta closes the gap (default 10000)")
    ppo.add_argument("--gamma", type=float, default=1.0, help="discount (default 1)")
    ppo.add_argument("--lam", type=float, default=0.95, help="GAE lambda (default 0.95)")
    ppo.add_argument("--clip", type=float, default=0.2, help="the probability ratio's clip range (default 0.2)")
    ppo.add_argument("--value-clip", type=float, default=0.2, help="the value update's clip range (default 0.2)")
    ppo.add_argument("--vf-coef", type=float, default=0.1, help="the value loss's weight (default 0.1)")
    ppo.add_argument("--reward-norm", choices=["none", "initial", "running"], default=None,
                     help="the reward model's scores as they are (none, the default), normalized to mean 0 and std 1 over "
                          "completions of the starting policy once (initial, Ziegler et al. 2019), or by running moments "
                          "of every score so far (running); --from a PPO run: that run's, continued")
    ppo.add_argument("--reward-norm-samples", type=int, default=256,
                     help="initial: completions of the starting policy its mean and std come from (default 256)")
    ppo.add_argument("--value-head", default=None, metavar="PATH|new",
                     help="the value head to continue: a value_head.safetensors or a PPO run holding one (default: "
                          "--from's when it is a PPO run, else a new one at zero; 'new': a new one)")
    ppo.add_argument("--reference", default=None, metavar="RUN_DIR",
                     help="the frozen reference of the KL penalty (default: the starting model; --from a PPO run: the "
                          "reference that run recorded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-model", dest="d_model", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff", type=int, default=128)
    p.add_argument("--max-len", dest="max_len", type=int, default=None,
                   help="longest sample in tokens (default 128 for the byte-level model, 512 for --model)")
