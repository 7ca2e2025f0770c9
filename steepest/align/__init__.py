"""Instruction tuning, reward models and DPO for causal LMs (000 §13), on the Trainer."""

from steepest.align.data import format_prompt, pair_tensors, sft_tensors
from steepest.align.objectives import (
           DPOLoss,
           PairLogprobs,
           RewardModel,
           response_logprobs,
           response_nll,
)
from steepest.align.pipeline import fit_dpo, fit_reward_model, fit_sft, generate
from steepest.align.tokens import ByteTokenizer

__all__ = ["ByteTokenizer", "DPOLoss", "PairLogprobs", "RewardModel", "fit_dpo", "fit_reward_model", "fit_sft", "format_prompt",
           "generate", "pair_tensors", "response_logprobs", "response_nll", "sft_tensors"]
