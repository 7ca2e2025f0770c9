"""Preference losses: the Bradley-Terry reward-model loss and DPO."""

from __future__ import annotations

import torch  # noqa: F401  (the examples use it)
import torch.nn.functional as F
from torch import Tensor


def bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor, margin: float = 0.0) -> Tensor:
    """Reward-model loss under the Bradley-Terry model (Bradley & Terry 1952; Ouyang et al. 2022),
    P(chosen > rejected) = sigma(r_c - r_r):

        l = -log sigma(r_c - r_r - margin)

    >>> round(float(bradley_terry(torch.tensor([1.0]), torch.tensor([1.0]))), 4)
    0.6931
    """
    return -F.logsigmoid(chosen_rewards - rejected_rewards - margin).mean()


def dpo(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor, beta: float = 0.1, label_smoothing: float = 0.0
        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Direct preference optimization (Rafailov et al. 2023), from summed sequence log-probs:

        r_c = beta (log pi(y_c|x) - log pi_ref(y_c|x)),  r_r likewise,  h = r_c - r_r
        l = -(1 - e) log sigma(h) - e log sigma(-h)      (e = label_smoothing: conservative DPO)

    Returns (loss, chosen_rewards, rejected_rewards, reward_accuracy); the rewards and the accuracy
    (fraction with r_c > r_r) are detached, for logging.

    >>> logp = torch.tensor([-1.0])
    >>> loss, rc, rr, acc = dpo(logp, logp - 1, logp, logp, beta=0.5)
    >>> round(float(loss), 4), float(rc), float(rr), float(acc)
    (0.4741, 0.0, -0.5, 1.0)
    """
    if beta <= 0 or not 0 <= label_smoothing < 0.5:
        raise ValueError("dpo needs beta > 0 and label_smoothing in [0, 0.5)")
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    h = chosen - rejected
    loss = (-(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)).mean()
    accuracy = (h > 0).to(h.dtype).mean()
    return loss, chosen.detach(), rejected.detach(), accuracy.detach()

