"""Instruction tuning, reward models, DPO and PPO for causal LMs (the InstructGPT pipeline, Ouyang et al. 2022;
DPO, Rafailov et al. 2023; PPO, Schulman et al. 2017). Names load on first use (`steepest.lazy`)."""

from steepest.lazy import lazy_exports

_EXPORTS = {
    "format_prompt": "steepest.align.data", "pair_tensors": "steepest.align.data", "sft_tensors": "steepest.align.data",
    "DPOLoss": "steepest.align.objectives", "PairLogprobs": "steepest.align.objectives", "RewardModel": "steepest.align.objectives",
    "response_logprobs": "steepest.align.objectives", "response_nll": "steepest.align.objectives",
    "fit_dpo": "steepest.align.pipeline", "fit_reward_model": "steepest.align.pipeline", "fit_sft": "steepest.align.pipeline",
    "generate": "steepest.align.pipeline", "ByteTokenizer": "steepest.data.tokens",
    "PPOConfig": "steepest.align.ppo", "evaluate_policy": "steepest.align.ppo", "fit_ppo": "steepest.align.ppo",
    "PPOState": "steepest.align.ppo", "RewardNormalizer": "steepest.align.ppo",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
