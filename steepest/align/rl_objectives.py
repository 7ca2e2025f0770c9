"""The pieces of PPO for language models as pure functions of tensors (RLHF: Ziegler et al. 2019, Ouyang et al. 2022).

Every tensor is (N, L): N sequences, L token positions, and `mask` (N, L) marks each sequence's response
tokens, one contiguous run per row (the positions a completion was sampled at; prompt and padding are 0).
Position t holds the action a_t (the response token), its log-probability log pi(a_t | s_t) and the value
V(s_t) of the state before it.

    per-token reward     r_t = -beta (log pi_old(a_t|s_t) - log pi_ref(a_t|s_t)) + [t = last] score
    GAE                  delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lambda A_{t+1}
                         (past the last response token V = 0 and A = 0: the episode ends there)
    returns              R_t = A_t + V_t (the value targets)
    clipped surrogate    L = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),  rho_t = exp(log pi - log pi_old)
    clipped value loss   L_V = 1/2 mean_t max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, -eps_v, eps_v) - R_t)^2)
    adaptive KL          beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon)   (Ziegler et al. 2019)
    score moments        n, mean, var of all scores so far, merged with a batch's (Chan et al. 1979): see `merge_moments`

GAE is Schulman et al. 2016, the clipped surrogate Schulman et al. 2017; the value clipping is the one of
OpenAI's baselines and of InstructGPT's PPO. Means are over the masked tokens of the whole batch.

    >>> import torch
    >>> mask = torch.tensor([[0.0, 1.0, 1.0]])
    >>> rewards = kl_penalty_rewards(torch.tensor([[0.0, -1.0, -2.0]]), torch.tensor([[0.0, -1.5, -2.0]]),
    ...                              torch.tensor([3.0]), mask, beta=0.1)
    >>> rewards
    tensor([[ 0.0000, -0.0500,  3.0000]])
    >>> advantages, returns = gae(rewards, torch.zeros(1, 3), mask, gamma=1.0, lam=1.0)
    >>> advantages                                    # with V = 0 and gamma = lambda = 1: the rewards still to come
    tensor([[0.0000, 2.9500, 3.0000]])
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp_min(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked positions (biased variance); 0 elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) - log pi_ref(y|x) for each sequence (N,): the per-token log-ratios of its response summed.
    Its mean over completions sampled from pi estimates KL(pi || pi_ref) per completion, without bias."""
    return ((logprobs - ref_logprobs) * mask).sum(-1)


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """The index of each row's last masked position (N,); 0 for a row with none."""
    steps = torch.arange(1, mask.shape[-1] + 1, device=mask.device)
    return (mask * steps).argmax(-1)


def kl_penalty_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
                       beta: float) -> torch.Tensor:
    """Per-token rewards: -beta (log pi_old - log pi_ref) at every response token, plus the reward model's score
    (N,) at each response's last token (InstructGPT's reward, Ouyang et al. 2022, eq. 2, spread over tokens)."""
    rewards = (ref_logprobs - logprobs) * (beta * mask)
    rows = torch.arange(len(scores), device=scores.device)
    return rewards.index_put((rows, last_positions(mask)), scores.to(rewards.dtype), accumulate=True)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns (Schulman et al. 2016), by the backward recursion
    A_t = delta_t + gamma lambda A_{t+1} over each row's response; (advantages, advantages + values), 0 off the mask."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[-1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * m
        next_value = values[:, t] * m
        advantages[:, t] = next_advantage
    return advantages, (advantages + values) * mask


def clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                      clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped policy loss (Schulman et al. 2017, eq. 7, negated to minimize) and the clip fraction: the share
    of tokens where the clipped term is the smaller one (its gradient is 0 there)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    return loss, masked_mean((clipped < unclipped).to(logprobs.dtype), mask)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """1/2 mean max((V - R)^2, (V_clipped - R)^2) with V_clipped = V_old + clip(V - V_old, -clip, clip), and the
    share of tokens where the clipped error is the larger one."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    error, clipped_error = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(error, clipped_error), mask)
    return loss, masked_mean((clipped_error > error).to(values.dtype), mask)


def adaptive_kl_beta(beta: float, kl: float, target: float, n_steps: int, horizon: int) -> float:
    """Ziegler et al. 2019's proportional controller: beta <- beta (1 + e n_steps / horizon), with the error
    e = clip(KL / target - 1, -0.2, 0.2); n_steps is the number of completions since the last update."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_steps / horizon)


def merge_moments(count: int, mean: float, var: float, batch: torch.Tensor) -> tuple[int, float, float]:
    """The count, mean and population variance (divided by n, not n - 1) of `count` earlier values with moments
    (mean, var) and the values of `batch` (any shape) together, by Chan, Golub and LeVeque's parallel update (1979;
    Welford's when the batch is one value), in float64 on the host:

        n = n_a + n_b,  delta = mean_b - mean_a,  mean = mean_a + delta n_b / n,
        var = (n_a var_a + n_b var_b + delta^2 n_a n_b / n) / n

    One host read per call. An empty batch changes nothing; count 0 takes the batch's own moments.

    >>> merge_moments(2, 1.0, 1.0, torch.tensor([3.0, 5.0]))   # the moments of 0, 2, 3, 5
    (4, 2.5, 3.25)
    """
    values = batch.detach().reshape(-1).double()
    n_b = values.numel()
    if n_b == 0:
        return count, mean, var
    var_b, mean_b = torch.stack(torch.var_mean(values, correction=0)).tolist()
    n = count + n_b
    delta = mean_b - mean
    return n, mean + delta * n_b / n, (count * var + n_b * var_b + delta * delta * count * n_b / n) / n
