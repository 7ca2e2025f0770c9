"""PPO on a causal LM against a reward model, with a KL penalty to a frozen reference: RLHF's third stage
(Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"; Ouyang et al. 2022, InstructGPT).

One PPO step, on a batch of prompts:

    rollout   a completion per prompt sampled from the policy (temperature 1, until eos or max_new_tokens); the
              reward model's score of prompt + completion; the completion's token log-probs under the policy
              (pi_old) and the frozen reference, and the value head's V(s_t)
    rewards   r_t = -beta (log pi_old - log pi_ref) at each token, + the score at the last one; GAE (gamma,
              lambda); advantages whitened over the batch (`steepest.align.rl_objectives`)
    update    `ppo_epochs` passes over the rollout in shuffled minibatches: clipped surrogate + vf_coef x clipped
              value loss, one AdamW step per minibatch, gradient norm clipped
    beta      with `target_kl`, Ziegler et al.'s proportional controller moves beta toward that KL

The scores may be normalized before they enter the reward (`PPOConfig.reward_norm`, `RewardNormalizer`): to mean 0
and standard deviation 1 over completions of the initial policy, once (Ziegler et al. 2019), or by running moments
of every score so far (as TRL's `use_score_norm`). What PPO carries from step to step besides the policy's weights
(the value head, the normalizer's moments, beta) is a `PPOState`; `steepest align ppo` saves it next to the policy
(`value_head.safetensors`, lm.json) and a later run started `--from` that folder continues it.

The value head is a linear layer on the policy's last hidden state (a shared backbone, as TRL's value-head models),
starting at zero and trained at `value_lr_scale` times the policy's learning rate. The policy runs without dropout
in rollouts and updates alike (as DPO's does: see `objectives.PairLogprobs`), so the first minibatch's ratio
pi / pi_old is 1 up to rounding, and the reference is the policy as it started.

    >>> import torch
    >>> from steepest.align.objectives import RewardModel
    >>> from steepest.data.tokens import ByteTokenizer
    >>> from steepest.models.transformer import CausalLM
    >>> tok = ByteTokenizer()
    >>> _ = torch.manual_seed(0)
    >>> lm = CausalLM(tok.vocab_size, d_model=16, heads=2, layers=1, ff=32, dropout=0.0, max_len=32)
    >>> scorer = RewardModel(CausalLM(tok.vocab_size, d_model=16, heads=2, layers=1, ff=32, max_len=32), 16, tok.pad_id)
    >>> log = fit_ppo(lm, scorer, ["Say yes: "] * 4, tok, hidden=16, steps=2, batch_size=4,
    ...               config=PPOConfig(max_new_tokens=4, minibatch_size=2))
    >>> [row["step"] for row in log], sorted(log[0])[:4]
    ([1, 2], ['beta', 'clip_fraction', 'epoch', 'kl'])
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from steepest.align.objectives import token_logprobs
from steepest.align.pipeline import context_length
from steepest.align.rl_objectives import (
    adaptive_kl_beta,
    clipped_surrogate,
    clipped_value_loss,
    gae,
    kl_penalty_rewards,
    merge_moments,
    sequence_kl,
    whiten,
)
from steepest.data.stream import epoch_order
from steepest.errors import CheckpointError, ConfigError, DataError
from steepest.optim import create as create_optimizer

__all__ = ["PPOConfig", "PPOState", "PolicyWithValue", "RewardNormalizer", "Rollout", "evaluate_policy", "fit_ppo",
           "load_value_head", "make_rollout", "new_value_head", "sample_completions", "save_value_head"]

LOG_COLUMNS = ("step", "epoch", "reward", "kl", "beta", "policy_loss", "value_loss", "clip_fraction",
               "value_clip_fraction", "length", "seconds")
REWARD_NORMS = ("none", "initial", "running")
VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass(frozen=True)
class PPOConfig:
    """PPO's hyperparameters: TRL's defaults for the clip ranges, gamma, lambda and vf_coef; the rest measured on the
    byte-level demo (tests/align/test_ppo.py)."""

    lr: float = 3e-4
    beta: float = 0.05  # KL penalty per token (log-ratio units); the initial value with target_kl
    target_kl: float | None = None  # KL per completion the adaptive controller steers beta toward (None: fixed beta)
    kl_horizon: int = 10_000  # completions over which the controller closes the gap (Ziegler et al.: 10k)
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2  # the ratio's clip range epsilon
    value_clip: float = 0.2
    vf_coef: float = 0.1
    value_lr_scale: float = 10.0  # the value head's lr over the policy's: under Adam a head at the policy's lr moves its
    # output by about lr per step, far too slowly to follow scores of several units (demo: value loss stayed near 7)
    ppo_epochs: int = 2  # at 4, 1 of 20 demo seeds degenerated within 20 steps ("yees", KL 3.1 nats); at 2, none
    minibatch_size: int = 8
    max_new_tokens: int = 16
    max_len: int | None = None  # prompt + completion in tokens (None: the model's context)
    clip_norm: float | None = 1.0
    whiten_advantages: bool = True
    reward_norm: str = "none"  # the scores as they are, or normalized: "initial" or "running" (RewardNormalizer)
    reward_norm_samples: int = 256  # "initial": completions of the initial policy its moments come from (Ziegler
    # et al.'s code, lm-human-preferences: normalize_samples=256)


class RewardNormalizer:
    """The reward model's scores s (N,) as PPO's reward sees them: s' = (s - mean) / sqrt(var + eps), eps = 1e-8, so
    that they have mean 0 and standard deviation 1 (var the population variance, as in Ziegler et al.'s code).

        none      s' = s
        initial   mean and var of the scores of `PPOConfig.reward_norm_samples` completions (256) sampled from the
                  initial policy before the first step, fixed from then on: a gain 1 / sqrt(var + eps) and a bias
                  -mean gain (Ziegler et al. 2019: mean 0 and variance 1 for x ~ D, y ~ rho(.|x), the initial policy;
                  so beta keeps one meaning whatever the reward model's scale)
        running   mean and var of every score seen so far, this batch's included, merged batch by batch
                  (`rl_objectives.merge_moments`, Chan et al. 1979); TRL's `use_score_scaling` + `use_score_norm`
                  do this with the unbiased std

    Moments are plain floats (float64) on the host; `fit` and a running call read the scores once.

    >>> import torch
    >>> norm = RewardNormalizer("running")
    >>> norm(torch.tensor([1.0, 3.0]))                 # mean 2, var 1
    tensor([-1.,  1.])
    >>> norm(torch.tensor([5.0, 7.0])), norm.count     # mean 4, var 5 over 1, 3, 5, 7
    (tensor([0.4472, 1.3416]), 4)
    """

    eps = 1e-8

    def __init__(self, mode: str = "none", count: int = 0, mean: float = 0.0, var: float = 0.0):
        if mode not in REWARD_NORMS:
            raise ConfigError(f"reward normalization '{mode}' is not one of {', '.join(REWARD_NORMS)}")
        self.mode, self.count, self.mean, self.var = mode, int(count), float(mean), float(var)

    def fit(self, scores: torch.Tensor) -> None:
        """Set the moments to those of `scores` alone (the initial policy's, for "initial")."""
        self.count, self.mean, self.var = merge_moments(0, 0.0, 0.0, scores)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return scores
        if self.mode == "running":
            self.count, self.mean, self.var = merge_moments(self.count, self.mean, self.var, scores)
        if self.count == 0:
            raise ValueError("the initial reward normalization has no moments yet: call fit(scores) first")
        return (scores - self.mean) * (1.0 / math.sqrt(self.var + self.eps))

    def state_dict(self) -> dict:
        """JSON-ready: {"mode", "count", "mean", "var"}."""
        return {"mode": self.mode, "count": self.count, "mean": self.mean, "var": self.var}

    @classmethod
    def from_state_dict(cls, state, source: str = "the saved state") -> RewardNormalizer:
        """The normalizer `state_dict` wrote; a CheckpointError naming `source` when it is not one."""
        ok = (isinstance(state, dict) and state.get("mode") in REWARD_NORMS and isinstance(state.get("count"), int)
              and not isinstance(state.get("count"), bool) and state["count"] >= 0
              and all(isinstance(state.get(k), (int, float)) and not isinstance(state.get(k), bool)
                      and math.isfinite(state[k]) for k in ("mean", "var")) and state["var"] >= 0)
        if not ok:
            raise CheckpointError(f"{source}: reward_norm must be {{mode: {'|'.join(REWARD_NORMS)}, count >= 0, finite mean, "
                                  f"var >= 0}}, got {state!r:.120}; fix the file or start a new normalization")
        return cls(state["mode"], state["count"], state["mean"], state["var"])

    def __repr__(self) -> str:
        return f"RewardNormalizer({self.mode!r}, count={self.count}, mean={self.mean:.4g}, var={self.var:.4g})"


def new_value_head(lm: nn.Module, hidden: int) -> nn.Linear:
    """A value head hidden -> 1 at zero (V = 0 everywhere at first), on the LM's device and in its dtype."""
    like = next(lm.parameters())
    head = nn.Linear(hidden, 1, device=like.device, dtype=like.dtype)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def save_value_head(head: nn.Linear, path) -> None:
    """The value head's weight (1, hidden) and bias (1,) as a safetensors file (no pickle)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(path),
              metadata={"format": "steepest.align.ppo value head", "hidden": str(head.in_features)})


def load_value_head(path, lm: nn.Module, hidden: int) -> nn.Linear:
    """The value head saved by `save_value_head` at `path` (the file, or a folder holding value_head.safetensors),
    on the LM's device and in its dtype. A missing or corrupt file, other tensors, a hidden size other than `hidden`
    or non-finite weights raise a one-line CheckpointError."""
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    file = path / VALUE_HEAD_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no {VALUE_HEAD_FILE}" if path.is_dir() else f"{path} does not exist"
        raise CheckpointError(f"{where}; give a value head written by steepest align ppo (or --value-head new)")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{file} does not load ({str(exc).splitlines()[0][:160]}); it is not a value head "
                              "written by steepest align ppo") from None
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if shapes != {"weight": (1, hidden), "bias": (1,)}:
        raise CheckpointError(f"{file} holds {shapes}, not a value head for hidden size {hidden} "
                              f"(weight (1, {hidden}), bias (1,)); was it trained on another model?")
    if not all(bool(torch.isfinite(v).all()) for v in tensors.values()):
        raise CheckpointError(f"{file} holds non-finite weights; train the stage again or start with --value-head new")
    head = new_value_head(lm, hidden)
    with torch.no_grad():
        head.weight.copy_(tensors["weight"])
        head.bias.copy_(tensors["bias"])
    return head


@dataclass
class PPOState:
    """What PPO carries from step to step besides the policy's weights: the value head (hidden -> 1), the reward
    normalizer (with its moments) and beta, the KL penalty's weight as the next step will use it (the adaptive
    controller moves it). `fit_ppo` updates it in place; give it back to a later `fit_ppo` to continue."""

    value_head: nn.Linear
    normalizer: RewardNormalizer
    beta: float

    @classmethod
    def new(cls, lm: nn.Module, hidden: int, config: PPOConfig) -> PPOState:
        """A value head at zero, config.reward_norm's normalizer without moments, config.beta."""
        return cls(new_value_head(lm, hidden), RewardNormalizer(config.reward_norm), config.beta)


class PolicyWithValue(nn.Module):
    """The policy LM and a value head on its last hidden state: ids (N, T) -> (token log-probs (N, T - 1),
    values (N, T - 1)), where position t holds log pi(ids[t + 1] | ids[:t + 1]) and V of the state ids[:t + 1].
    `lm` needs `features(ids)` and `head` (hidden -> logits), as the byte-level CausalLM and PretrainedCausalLM have.
    `value_head` (hidden -> 1): one to continue training (`load_value_head`), or None for a new one at zero."""

    def __init__(self, lm: nn.Module, hidden: int, value_head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        self.value_head = value_head if value_head is not None else new_value_head(lm, hidden)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lm.features(ids)
        values = self.value_head(h[:, :-1]).squeeze(-1)
        return token_logprobs(self.lm.head(h), ids), values.float()


@dataclass
class Rollout:
    """A batch of sampled completions and everything PPO's update reads; (N, T - 1) tensors are in log-prob positions."""

    ids: torch.Tensor  # (N, T) prompt + completion, right-padded
    lengths: torch.Tensor  # (N,) real tokens per row
    mask: torch.Tensor  # (N, T - 1) 1 at the completion's tokens
    logprobs: torch.Tensor  # pi_old
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # (N,) the reward model's, as it gave them (before any normalization)
    advantages: torch.Tensor  # GAE, whitened over the batch (config.whiten_advantages)
    returns: torch.Tensor  # the value targets: GAE + values


def _room(lm: nn.Module, prompts: list[list[int]], max_new_tokens: int, max_len: int | None) -> int:
    """New tokens the longest prompt leaves within the model's context (and max_len): at most max_new_tokens."""
    limits = [n for n in (context_length(lm), max_len) if n]
    limit = min(limits) if limits else None
    longest = max(len(p) for p in prompts)
    if limit is not None and longest >= limit:
        raise DataError(f"a prompt needs {longest} tokens, which leaves no room for a completion within "
                        f"{limit} tokens; shorten it or raise --max-len")
    return max_new_tokens if limit is None else min(max_new_tokens, limit - longest)


@torch.no_grad()
def sample_completions(lm: nn.Module, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
                       generator: torch.Generator | None = None) -> list[list[int]]:
    """A completion of each prompt (token ids, eos included when it came) sampled at temperature 1.

    A Hugging Face model samples with its own `generate` (left-padded, key/value cache, torch's global generator);
    the byte-level model right-padded, one full forward per token (no cache: its sequences are short), from
    `generator`. Either way all prompts at once."""
    was = lm.training
    lm.eval()
    try:
        if hasattr(lm, "sample"):
            return lm.sample(prompts, max_new_tokens, eos_id)
        return _sample_batch(lm, prompts, max_new_tokens, eos_id, pad_id, generator)
    finally:
        lm.train(was)


def _sample_batch(lm, prompts, max_new_tokens, eos_id, pad_id, generator):
    device = next(lm.parameters()).device
    n = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    ids = torch.full((n, int(lengths.max()) + max_new_tokens), pad_id, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = torch.tensor(p, device=device)
    start, done, rows = lengths.clone(), torch.zeros(n, dtype=torch.bool, device=device), torch.arange(n, device=device)
    for _ in range(max_new_tokens):
        logits = lm(ids[:, : int(lengths.max())])[rows, lengths - 1].float()
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        ids[rows, lengths] = torch.where(done, ids[rows, lengths], nxt)
        lengths = lengths + (~done).long()
        done = done | (nxt == eos_id)
        if bool(done.all()):  # one host sync per token
            break
    return [ids[row, int(start[row]) : int(lengths[row])].tolist() for row in range(n)]


def _pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """ids (N, T) right-padded, lengths (N,), and the completions' mask in log-prob positions (N, T - 1)."""
    seqs = [p + c for p, c in zip(prompts, completions)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width - 1))
    for row, (p, s) in enumerate(zip(prompts, seqs)):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, len(p) - 1 : len(s) - 1] = 1.0  # log-prob position t predicts token t + 1
    return ids.to(device), torch.tensor([len(s) for s in seqs], device=device), mask.to(device)


@torch.no_grad()
def _in_chunks(fn: Callable, ids: torch.Tensor, lengths: torch.Tensor, size: int) -> list:
    """fn over row chunks of ids, each cut to its longest row, padded back to ids' width with zeros."""
    outs = []
    for i in range(0, len(ids), size):
        width = int(lengths[i : i + size].max())
        out = fn(ids[i : i + size, :width])
        outs.append(out if isinstance(out, tuple) else (out,))
    pad = lambda x: nn.functional.pad(x, (0, ids.shape[1] - 1 - x.shape[-1])) if x.dim() == 2 else x  # noqa: E731
    return [torch.cat([pad(o[k]) for o in outs]) for k in range(len(outs[0]))]


def make_rollout(policy: PolicyWithValue, reference: nn.Module, reward_model: nn.Module, prompts: list[list[int]],
                 tokenizer, config: PPOConfig, beta: float, generator: torch.Generator | None = None,
                 normalizer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Rollout:
    """Sample, score and evaluate one batch of prompts (token ids, bos included), then its rewards and advantages;
    the rewards take the scores through `normalizer` (a `RewardNormalizer`; None: as they are)."""
    room = _room(policy.lm, prompts, config.max_new_tokens, config.max_len)
    completions = sample_completions(policy.lm, prompts, room, tokenizer.eos_id, tokenizer.pad_id, generator)
    device = next(policy.parameters()).device
    ids, lengths, mask = _pack(prompts, completions, tokenizer.pad_id, device)
    chunk = max(config.minibatch_size, 1)
    was = [m.training for m in (policy, reference, reward_model)]
    for m in (policy, reference, reward_model):
        m.eval()
    try:
        logprobs, values = _in_chunks(policy, ids, lengths, chunk)
        (ref_logprobs,) = _in_chunks(lambda x: token_logprobs(reference(x), x), ids, lengths, chunk)
        (scores,) = _in_chunks(lambda x: reward_model(x).float(), ids, lengths, chunk)
    finally:
        for m, w in zip((policy, reference, reward_model), was):
            m.train(w)
    values = values * mask
    rewards = kl_penalty_rewards(logprobs, ref_logprobs, scores if normalizer is None else normalizer(scores), mask, beta)
    advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return Rollout(ids, lengths, mask, logprobs, ref_logprobs, values, scores, advantages, returns)


def ppo_update(policy: PolicyWithValue, optimizer: torch.optim.Optimizer, rollout: Rollout, config: PPOConfig,
               generator: torch.Generator) -> torch.Tensor:
    """`ppo_epochs` passes over the rollout in shuffled minibatches, one optimizer step each; the mean over
    minibatches of (policy loss, value loss, clip fraction, value clip fraction), on the device."""
    n = len(rollout.ids)
    stats = []
    for _ in range(config.ppo_epochs):
        order = torch.randperm(n, generator=generator).to(rollout.ids.device)
        for i in range(0, n, config.minibatch_size):
            idx = order[i : i + config.minibatch_size]
            width = int(rollout.lengths[idx].max())  # a host read per minibatch: the shorter forward pays for it
            mask = rollout.mask[idx, : width - 1]
            logprobs, values = policy(rollout.ids[idx, :width])
            pg_loss, clip_fraction = clipped_surrogate(logprobs, rollout.logprobs[idx, : width - 1],
                                                       rollout.advantages[idx, : width - 1], mask, config.clip)
            vf_loss, value_clip_fraction = clipped_value_loss(values, rollout.values[idx, : width - 1],
                                                              rollout.returns[idx, : width - 1], mask, config.value_clip)
            (pg_loss + config.vf_coef * vf_loss).backward()
            if config.clip_norm is not None:
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"] if p.grad is not None],
                                         config.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            stats.append(torch.stack([pg_loss.detach(), vf_loss.detach(), clip_fraction, value_clip_fraction]))
    return torch.stack(stats).mean(0)


def fit_ppo(lm: nn.Module, reward_model: nn.Module, prompts: list[str], tokenizer, *, hidden: int,
            reference: nn.Module | None = None, config: PPOConfig = PPOConfig(), steps: int | None = None,
            epochs: int = 1, batch_size: int = 16, seed: int = 0, state: PPOState | None = None,
            log: Callable[[dict], None] | None = None) -> list[dict]:
    """PPO on `lm` in place against `reward_model`, over batches of `prompts` (text, each already in the model's
    prompt format); `steps` PPO steps, or `epochs` passes over the prompts. The reference is a frozen copy of
    `lm` as it is now unless given (give the model before LoRA adapters were added, as `steepest align ppo`
    does). Returns one row per step (LOG_COLUMNS), each also given to `log` as it comes.

    `state` (a `PPOState`: value head, reward normalizer, beta) is what a run continues from and is updated in place;
    None: `PPOState.new(lm, hidden, config)` (then config.beta and config.reward_norm apply; with a state, its own
    beta and normalizer, whose mode must be config.reward_norm). With "initial" normalization and no moments yet,
    `config.reward_norm_samples` completions of `lm` as it is now are sampled and scored first (no update).

    Seeds torch's global generator with `seed` (a Hugging Face model samples from it) and draws the byte-level
    model's samples, the prompt order and the minibatches from generators of their own."""
    if not prompts:
        raise DataError("PPO needs at least one prompt")
    state = state if state is not None else PPOState.new(lm, hidden, config)
    if state.normalizer.mode != config.reward_norm:
        raise ConfigError(f"the state's reward normalization is '{state.normalizer.mode}' and the config's "
                          f"'{config.reward_norm}'; give one")
    torch.manual_seed(seed)
    reference = (reference if reference is not None else copy.deepcopy(lm)).eval().requires_grad_(False)
    reward_model.eval().requires_grad_(False)
    policy = PolicyWithValue(lm, hidden, state.value_head)
    optimizer = create_optimizer("adamw", policy, lr=config.lr, weight_decay=0.0, lr_scale={"value_head": config.value_lr_scale})
    device = next(lm.parameters()).device
    sampler = torch.Generator(device=device).manual_seed(seed)
    shuffler = torch.Generator().manual_seed(seed + 1)
    encoded = [tokenizer.encode(p, bos=True, eos=False) for p in prompts]
    per_epoch = math.ceil(len(encoded) / batch_size)
    total = steps if steps is not None else epochs * per_epoch
    beta, history, start, was = state.beta, [], time.perf_counter(), lm.training
    policy.eval()  # no dropout, in rollouts and updates alike (gradients still flow)
    try:
        if state.normalizer.mode == "initial" and state.normalizer.count == 0:
            state.normalizer.fit(initial_scores(lm, reward_model, encoded, tokenizer, config, batch_size, seed))
        for step in range(total):
            epoch, k = divmod(step, per_epoch)
            order = epoch_order(len(encoded), epoch, seed)[k * batch_size : (k + 1) * batch_size].tolist()
            rollout = make_rollout(policy, reference, reward_model, [encoded[i] for i in order], tokenizer, config, beta, sampler,
                                   state.normalizer)
            losses = ppo_update(policy, optimizer, rollout, config, shuffler).tolist()  # one host sync per step
            kl = float(sequence_kl(rollout.logprobs, rollout.ref_logprobs, rollout.mask).mean())
            row = dict(zip(LOG_COLUMNS, [step + 1, epoch, float(rollout.scores.mean()), kl, beta, *losses,
                                         float(rollout.mask.sum(-1).mean()), time.perf_counter() - start]))
            history.append(row)
            if log is not None:
                log(row)
            if config.target_kl is not None:
                beta = adaptive_kl_beta(beta, kl, config.target_kl, len(order), config.kl_horizon)
                state.beta = beta
    finally:
        lm.train(was)
    return history


@torch.no_grad()
def initial_scores(lm: nn.Module, reward_model: nn.Module, encoded: list[list[int]], tokenizer, config: PPOConfig,
                   batch_size: int, seed: int) -> torch.Tensor:
    """The reward model's scores (n,) of n = config.reward_norm_samples completions sampled from `lm` (temperature
    1, at most config.max_new_tokens), over the prompts (token ids) in a shuffled order, cycled when there are fewer
    than n, `batch_size` at a time: what "initial" reward normalization takes its moments from. The byte-level model
    samples from a generator seeded with seed + 2, so the rollouts that follow are the same whatever n is."""
    n = config.reward_norm_samples
    if n < 2:
        raise ConfigError(f"reward normalization needs at least 2 samples for a standard deviation, got {n}")
    order = epoch_order(len(encoded), 0, seed + 2).tolist()
    picked = [encoded[order[i % len(order)]] for i in range(n)]
    generator = torch.Generator(device=next(lm.parameters()).device).manual_seed(seed + 2)
    was = [m.training for m in (lm, reward_model)]
    lm.eval()
    reward_model.eval()
    try:
        scores = []
        for i in range(0, n, batch_size):
            batch = picked[i : i + batch_size]
            room = _room(lm, batch, config.max_new_tokens, config.max_len)
            completions = sample_completions(lm, batch, room, tokenizer.eos_id, tokenizer.pad_id, generator)
            ids, lengths, _ = _pack(batch, completions, tokenizer.pad_id, next(lm.parameters()).device)
            scores.append(_in_chunks(lambda x: reward_model(x).float(), ids, lengths, max(config.minibatch_size, 1))[0])
    finally:
        for m, w in zip((lm, reward_model), was):
            m.train(w)
    return torch.cat(scores)


@torch.no_grad()
def evaluate_policy(lm: nn.Module, reward_model: nn.Module, reference: nn.Module, prompts: list[str], tokenizer, *,
                    samples: int = 1, max_new_tokens: int = 16, batch_size: int = 32, seed: int = 0) -> dict:
    """The reward model's mean score of completions sampled from `lm` (`samples` per prompt), their KL to
    `reference` (the mean of log pi(y|x) - log pi_ref(y|x), an unbiased estimate of KL(pi || pi_ref) per
    completion) and their mean length in tokens."""
    encoded = [tokenizer.encode(p, bos=True, eos=False) for p in prompts] * samples
    generator = torch.Generator(device=next(lm.parameters()).device).manual_seed(seed)
    torch.manual_seed(seed)
    scores, kls, lengths = [], [], []
    was = [m.training for m in (lm, reference, reward_model)]
    for m in (lm, reference, reward_model):
        m.eval()
    try:
        for i in range(0, len(encoded), batch_size):
            batch = encoded[i : i + batch_size]
            completions = sample_completions(lm, batch, _room(lm, batch, max_new_tokens, None), tokenizer.eos_id,
                                             tokenizer.pad_id, generator)
            ids, lengths_, mask = _pack(batch, completions, tokenizer.pad_id, next(lm.parameters()).device)
            chunk = max(1, batch_size // 4)
            (logprobs,) = _in_chunks(lambda x: token_logprobs(lm(x), x), ids, lengths_, chunk)
            (ref_logprobs,) = _in_chunks(lambda x: token_logprobs(reference(x), x), ids, lengths_, chunk)
            (batch_scores,) = _in_chunks(lambda x: reward_model(x).float(), ids, lengths_, chunk)
            kls.append(sequence_kl(logprobs, ref_logprobs, mask))
            scores.append(batch_scores)
            lengths.append(mask.sum(-1))
    finally:
        for m, w in zip((lm, reference, reward_model), was):
            m.train(w)
    return {"reward": float(torch.cat(scores).mean()), "kl": float(torch.cat(kls).mean()),
            "length": float(torch.cat(lengths).mean())}
