"""The alignment stages end to end on the Trainer: instruction tuning (SFT), a reward model, and
DPO against a frozen copy of the SFT model (Ouyang et al. 2022: SFT -> reward model -> preference optimization;
DPO replaces the RL stage with a classification loss on preference pairs).

    >>> import torch
    >>> from steepest.models.transformer import CausalLM
    >>> tok = ByteTokenizer()
    >>> _ = torch.manual_seed(0)  # over seeds 0-9 the answer is 'yes' each time (response NLL <= 0.0011)
    >>> lm = CausalLM(tok.vocab_size, d_model=32, heads=2, layers=1, ff=64, dropout=0.0)
    >>> samples = [{"instruction": "Answer yes.", "output": "yes"}] * 8
    >>> trainer = fit_sft(lm, samples, max_epochs=30, lr=3e-3, batch_size=8)
    >>> generate(lm, tok, format_prompt(samples[0]), max_new_tokens=5)
    'yes'
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from steepest.align.data import format_prompt, pair_tensors, sft_tensors
from steepest.align.objectives import (
    DPOLoss,
    PairLogprobs,
    RewardModel,
    bradley_terry_loss,
    reference_logprobs,
    response_nll,
)
from steepest.data.containers import DataBundle, DataInfo, Split
from steepest.data.loader import DeviceLoader
from steepest.data.tokens import ByteTokenizer
from steepest.errors import DataError
from steepest.optim import create as create_optimizer
from steepest.training.callbacks.progress import ProgressBar
from steepest.training.trainer import Trainer, TrainerOptions

__all__ = ["fit_dpo", "fit_reward_model", "fit_sft", "format_prompt", "generate"]


def _bundle(x: torch.Tensor, y: torch.Tensor, source: str) -> DataBundle:
    empty = Split(x[:0], y[:0])
    return DataBundle(Split(x, y), empty, empty, DataInfo(source, "alignment", tuple(x.shape[1:]), 0))


def _fit(model: nn.Module, loss_fn, data: DataBundle, *, lr: float, max_epochs: int, batch_size: int, seed: int,
         optimizer: str = "adamw", weight_decay: float = 0.0, clip_norm: float | None = 1.0, accumulate: int = 1,
         precision: str = "fp32", shuffle: bool = True, callbacks=()) -> Trainer:
    opt = create_optimizer(optimizer, model, lr=lr, weight_decay=weight_decay)
    loader = DeviceLoader(data.train.x, data.train.y, min(batch_size, len(data.train)), shuffle=shuffle, seed=seed)
    options = TrainerOptions(max_epochs=max_epochs, accumulate=accumulate, precision=precision, clip_norm=clip_norm,
                             log_every_n_steps=10**9)
    trainer = Trainer(model, opt, loss_fn, loader, options=options, info=data.info,
                      callbacks=[ProgressBar(), *callbacks])  # a bar on a terminal, silent otherwise
    trainer.fit()
    return trainer


def fit_sft(lm: nn.Module, samples: list[dict], tokenizer: ByteTokenizer | None = None, *, max_len: int = 256,
            lr: float = 1e-3, max_epochs: int = 3, batch_size: int = 16, seed: int = 0, **kwargs) -> Trainer:
    """Instruction-tune `lm` in place on {"instruction", "input", "output"} samples (loss on responses only)."""
    ids, labels = sft_tensors(samples, tokenizer or ByteTokenizer(), max_len)
    return _fit(lm, response_nll, _bundle(ids, labels, "instructions"), lr=lr, max_epochs=max_epochs, batch_size=batch_size,
                seed=seed, **kwargs)


def fit_reward_model(backbone: nn.Module, hidden: int, pairs: list[tuple[str, str, str]], tokenizer: ByteTokenizer | None = None,
                     *, max_len: int = 256, lr: float = 1e-3, max_epochs: int = 3, batch_size: int = 16, seed: int = 0,
                     **kwargs) -> RewardModel:
    """A reward model (backbone + scalar head) trained with the Bradley-Terry loss on (prompt, chosen, rejected)."""
    tok = tokenizer or ByteTokenizer()
    ids, spans = pair_tensors(pairs, tok, max_len)
    model = RewardModel(backbone, hidden, tok.pad_id)
    _fit(model, bradley_terry_loss, _bundle(ids, spans, "preferences"), lr=lr, max_epochs=max_epochs, batch_size=batch_size,
         seed=seed, **kwargs)
    return model


def fit_dpo(policy: nn.Module, pairs: list[tuple[str, str, str]], tokenizer: ByteTokenizer | None = None, *,
            reference: nn.Module | None = None, beta: float = 0.1, label_smoothing: float = 0.0, max_len: int = 256,
            lr: float = 5e-4, max_epochs: int = 3, batch_size: int = 16, seed: int = 0, **kwargs) -> Trainer:
    """DPO on (prompt, chosen, rejected) pairs; the reference is a frozen copy of `policy` as it is now
    (the SFT model) unless given. Its log-probs are computed once, before the first step."""
    ids, spans = pair_tensors(pairs, tokenizer or ByteTokenizer(), max_len)
    ref_model = reference if reference is not None else copy.deepcopy(policy)
    ref = reference_logprobs(ref_model, ids, spans)
    targets = torch.cat([spans.double(), ref.double().unsqueeze(-1)], dim=-1)
    return _fit(PairLogprobs(policy), DPOLoss(beta, label_smoothing), _bundle(ids, targets, "preferences"), lr=lr,
                max_epochs=max_epochs, batch_size=batch_size, seed=seed, **kwargs)


def context_length(lm: nn.Module) -> int | None:
    """The most positions `lm` takes: the byte-level model's position table, a Hugging Face model's
    `context_length`; None when the model does not say."""
    if hasattr(lm, "context_length"):
        return lm.context_length
    pos = getattr(lm, "pos", None)
    return pos.num_embeddings if isinstance(pos, nn.Embedding) else None


@torch.no_grad()
def generate(lm: nn.Module, tokenizer: ByteTokenizer, prompt: str, max_new_tokens: int = 64) -> str:
    """Greedy decoding until eos (or `max_new_tokens`); returns the new text only.

    Past the model's context the byte-level model sees the last `context_length` tokens (a sliding
    window); a Hugging Face model, decoding with its key/value cache, stops at its context with a warning.
    A prompt longer than the context is an error: cropping it would drop the instruction."""
    device = next(lm.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt, bos=True, eos=False)], device=device)
    context = context_length(lm)
    if context is not None and ids.shape[1] > context:
        raise DataError(f"the prompt needs {ids.shape[1]} tokens, more than the model's context of {context}; "
                        f"shorten it (it starts {prompt[:40]!r})")
    was = lm.training
    lm.eval()
    try:
        if hasattr(lm, "greedy"):  # a Hugging Face model: its own decoding loop, with the key/value cache
            return tokenizer.decode(_greedy_within_context(lm, ids, max_new_tokens, tokenizer.eos_id, context))
        new: list[int] = []
        for _ in range(max_new_tokens):
            window = ids if context is None else ids[:, -context:]
            nxt = int(lm(window)[0, -1].argmax())
            if nxt == tokenizer.eos_id:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
        return tokenizer.decode(new)
    finally:
        lm.train(was)


def _greedy_within_context(lm: nn.Module, ids: torch.Tensor, max_new_tokens: int, eos_id: int, context: int | None):
    room = max_new_tokens if context is None else min(max_new_tokens, context - ids.shape[1])
    new = lm.greedy(ids, room, eos_id) if room > 0 else []
    if room < max_new_tokens and len(new) == room:
        warnings.warn(f"generation stopped at the model's context of {context} tokens, after {room} new tokens", stacklevel=3)
    return new
