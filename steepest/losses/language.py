"""The causal language-modeling loss: the mean cross-entropy of each position's logits against the
token that follows it (Bengio et al. 2003; GPT-2's objective, Radford et al. 2019).

Targets come already shifted: a window of T + 1 tokens w gives inputs w[:T] and targets w[1:]
(`steepest.data.tokens.TokenWindows`), so position t of the targets is the token after position t
of the inputs. (`steepest.models.transformer.next_token_loss` is the same loss for one sequence of
ids that is both, shifting inside.)

    >>> logits = torch.zeros(2, 3, 5)                        # uniform over 5 tokens
    >>> round(float(next_token_cross_entropy(logits, torch.ones(2, 3))), 4) == round(math.log(5), 4)
    True
"""

from __future__ import annotations

import math  # noqa: F401 - the docstring example

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100  # target positions the loss skips (padding)


def next_token_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """-mean_t log softmax(logits[n, t])[targets[n, t]] over every (n, t) whose target is not
    `ignore_index`. logits (N, T, V) (any float dtype; the log-softmax runs in at least float32),
    targets (N, T) token ids (integers, or floats holding integers: the data pipeline's float32
    ids). A batch whose every target is ignored gives 0 (the sum over no tokens divided by 1), not
    torch's NaN, so an accumulated step with such a micro-batch stays finite."""
    if logits.dim() != targets.dim() + 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: expected (N, T, V) logits and (N, T) token targets")
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    labels = targets.reshape(-1).long()
    total = F.cross_entropy(flat, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp_min(1)


class NextToken(nn.Module):
    """`next_token_cross_entropy` for recipes (`loss: {name: next_token}`, the default of a
    `language_modeling` task). Its mean is over target tokens, so `normalizer(targets)` counts them:
    accumulated micro-batches weigh every token equally, as one batch would."""

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return next_token_cross_entropy(outputs, targets, self.ignore_index)

    def normalizer(self, targets: Tensor) -> Tensor:
        return (targets != self.ignore_index).sum()

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"
