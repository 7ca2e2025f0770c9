"""The three training objectives of the alignment pipeline (InstructGPT, Ouyang et al. 2022), as Trainer-ready model
wrappers and losses of (outputs, targets):

    SFT      model = the causal LM, targets = labels (N, T); loss = next-token cross-entropy on the
             response tokens only (`response_nll`)
    reward   model = RewardModel (the LM's hidden state at each sequence's last token -> a scalar),
             inputs = pairs (N, 2, T); loss = Bradley-Terry, -log sigma(r_chosen - r_rejected)
    DPO      model = PairLogprobs(policy) -> per-token log-probs (N, 2, T - 1); targets = (N, 2, 3):
             response start, length and the frozen reference model's log-prob of the response,
             computed once before training (Rafailov et al. 2023: the reference never changes)

Accumulated micro-batches weigh by each loss's own mean (the engine's `normalizer`): the SFT loss is a
mean over response tokens, so `ResponseNLL.normalizer` counts them; DPO and Bradley-Terry are means over
pairs (one term per pair, whatever its responses' lengths), so they weigh by samples, the engine's default.
Losses are computed in float32 at least (float64 stays float64), whatever the autocast dtype.

DPO runs the policy without dropout, as it does the reference (TRL's `disable_dropout`): at the first
step policy = reference and the loss is ln 2, and dropout noise does not count as a preference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from steepest.align.data import IGNORE
from steepest.losses.preference import bradley_terry, dpo


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 (autocast) to float32; float32 and float64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class ResponseNLL:
    """Mean cross-entropy of predicting labels[:, t+1] from logits[:, t], over response tokens only
    (labels IGNORE elsewhere). Its mean is over tokens, so `normalizer` counts them: accumulated
    micro-batches with different response lengths weigh each token equally, as one batch would."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_at_least_float32(logits[:, :-1].reshape(-1, logits.shape[-1])), labels[:, 1:].reshape(-1).long(),
                               ignore_index=IGNORE)

    @staticmethod
    def normalizer(labels: torch.Tensor) -> torch.Tensor:
        return (labels[:, 1:] != IGNORE).sum()


response_nll = ResponseNLL()


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[..., t+1] | ids[..., :t+1]) for every t: shape ids.shape[:-1] + (T - 1,)."""
    logp = torch.log_softmax(_at_least_float32(logits[..., :-1, :]), dim=-1)
    return logp.gather(-1, ids[..., 1:].long().unsqueeze(-1)).squeeze(-1)


def response_logprobs(token_logps: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Sum of the token log-probs of each response: positions t with start <= t + 1 < length."""
    target_pos = torch.arange(1, token_logps.shape[-1] + 1, device=token_logps.device)
    start, length = spans[..., 0:1], spans[..., 1:2]
    mask = (target_pos >= start) & (target_pos < length)
    return (token_logps * mask).sum(-1)


class PairLogprobs(nn.Module):
    """Per-token log-probs of both sequences of each pair under `lm`: (N, 2, T) ids -> (N, 2, T - 1).

    `lm` runs in eval mode inside `forward` (gradients still flow), so no dropout of any kind is applied: not
    the nn.Dropout modules, nor the attention dropout that nn.MultiheadAttention and Hugging Face models apply
    as a float in training mode, nor LoRA's. Switching modes per call survives the Trainer's `model.train()`
    and leaves the model as it was (its dropout rates included) for any later stage."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n, k, t = ids.shape
        flat = ids.reshape(n * k, t).long()
        was = self.lm.training
        self.lm.eval()
        try:
            logits = self.lm(flat)
        finally:
            self.lm.train(was)
        return token_logprobs(logits, flat).reshape(n, k, t - 1)


class DPOLoss:
    """loss(outputs = PairLogprobs output, targets = (N, 2, 3) [start, length, reference log-prob]). A mean
    over pairs: no `normalizer`, so accumulated micro-batches weigh by their number of pairs."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0):
        self.beta, self.label_smoothing = beta, label_smoothing

    def __call__(self, token_logps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        policy = response_logprobs(token_logps, targets[..., :2].long())
        ref = targets[..., 2].to(policy.dtype)
        return dpo(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], self.beta, self.label_smoothing)[0]


class RewardModel(nn.Module):
    """A scalar reward from a causal LM backbone (anything with `features(ids)` -> (N, T, d)): the
    hidden state at each sequence's last real token (the rightmost one that is not padding, so a pad id
    that also occurs inside the prompt, as a chat template's end-of-turn often does, is harmless),
    through a linear head (on the backbone's device, in its dtype). Accepts (N, T) or (N, 2, T)."""

    def __init__(self, backbone: nn.Module, hidden: int, pad_id: int):
        super().__init__()
        self.backbone, self.pad_id = backbone, pad_id
        like = next(backbone.parameters(), torch.empty(0))
        self.score = nn.Linear(hidden, 1, device=like.device, dtype=like.dtype)
        nn.init.zeros_(self.score.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        shape = ids.shape[:-1]
        flat = ids.reshape(-1, ids.shape[-1]).long()
        h = self.backbone.features(flat)
        real = (flat != self.pad_id).long()  # right padding: the last real token is the rightmost non-pad
        last = (real * torch.arange(1, flat.shape[-1] + 1, device=flat.device)).argmax(-1)
        return self.score(h[torch.arange(len(flat), device=flat.device), last]).reshape(shape)


def bradley_terry_loss(rewards: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Reward-model loss for (N, 2) rewards of (chosen, rejected), a mean over pairs (accumulated micro-batches
    weigh by their number of pairs); the targets are unused."""
    rewards = _at_least_float32(rewards)
    return bradley_terry(rewards[:, 0], rewards[:, 1])


@torch.no_grad()
def reference_logprobs(lm: nn.Module, ids: torch.Tensor, spans: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The reference model's response log-probs (N, 2), without dropout (as the policy's, see PairLogprobs)."""
    scorer = PairLogprobs(lm)
    return torch.cat([response_logprobs(scorer(ids[i : i + batch_size]), spans[i : i + batch_size])
                      for i in range(0, len(ids), batch_size)])
