"""Pretrained Hugging Face causal LMs (SmolLM2-135M-Instruct, or any save_pretrained folder) in the
alignment pipeline, behind the same two small interfaces as the byte-level model:

    tokenizer: encode(text, bos, eos) / decode(ids) / pad_id, bos_id, eos_id, vocab_size / chat_prompt(sample)
    network:   forward(ids) -> logits (N, T, V),  features(ids) -> last hidden states (N, T, d), head, context_length

Sequences are right-padded, so with causal attention no real position ever sees a pad: the model
runs without an attention mask and the results at real positions are exact. An instruction-tuned
model's own chat template formats the prompts (`chat_prompt`), so fine-tuning continues the format
the model was trained on.

    steepest align sft data.jsonl --model SmolLM2-135M-Instruct --lora 16 --run-dir runs/sft
"""

from __future__ import annotations

import torch
from torch import nn

from steepest.align.data import format_prompt, user_message
from steepest.hub import load_model, load_tokenizer


class PretrainedTokenizer:
    """A Hugging Face tokenizer with the ByteTokenizer interface (models without bos/eos use [CLS]/[SEP])."""

    def __init__(self, name: str):
        self.name = name
        self.tok = load_tokenizer(name)
        tok = self.tok
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if self.eos_id is None:
            raise ValueError(f"tokenizer of '{name}' has no end-of-sequence token; alignment needs one to stop generation")
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        self.vocab_size = len(tok)

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        if bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id, *ids]
        return ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def chat_prompt(self, sample: dict) -> str:
        """The model's chat template around the sample's instruction (and input), ready for the answer."""
        if not getattr(self.tok, "chat_template", None):
            return format_prompt(sample)
        return self.tok.apply_chat_template([{"role": "user", "content": user_message(sample)}], tokenize=False,
                                            add_generation_prompt=True)


class PretrainedCausalLM(nn.Module):
    """A transformers causal LM as ids -> logits, with `features` for reward models."""

    def __init__(self, name: str, from_scratch: bool = False):
        super().__init__()
        self.name = name
        self.net = load_model(name, "causal_lm", from_scratch=from_scratch)
        self.hidden_size = int(self.net.config.hidden_size)
        config = self.net.config  # the positions it was trained on (a learned table, or RoPE's trained range)
        self.context_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=ids.long(), use_cache=False).logits

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net.base_model(input_ids=ids.long(), use_cache=False).last_hidden_state

    @property
    def head(self) -> nn.Module:
        """The output layer: head(features(ids)) = forward(ids) (a value head shares the features, see align.ppo)."""
        return self.net.get_output_embeddings()

    @torch.no_grad()
    def sample(self, prompts: list[list[int]], max_new_tokens: int, eos_id: int) -> list[list[int]]:
        """A continuation of each prompt sampled at temperature 1 from the full distribution (no top-k/top-p, whatever
        the model's generation config says), all prompts at once: left-padded, with an attention mask (the model
        numbers positions from it) and the key/value cache. The new ids of each, eos included when it came."""
        device = next(self.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(p, device=device)
            mask[row, width - len(p):] = 1
        out = self.net.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                                temperature=1.0, top_p=1.0, top_k=0, min_p=None, eos_token_id=eos_id, pad_token_id=eos_id)
        completions = []
        for new in out[:, width:].tolist():
            completions.append(new[: new.index(eos_id) + 1] if eos_id in new else new)
        return completions

    @torch.no_grad()
    def greedy(self, ids: torch.Tensor, max_new_tokens: int, eos_id: int) -> list[int]:
        """Greedy continuation of one prompt (1, T) with the model's key/value cache; the new ids, eos excluded."""
        out = self.net.generate(input_ids=ids.long(), attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, temperature=None, top_p=None, top_k=None, eos_token_id=eos_id, pad_token_id=eos_id)
        new = out[0, ids.shape[1]:].tolist()
        return new[: new.index(eos_id)] if eos_id in new else new
