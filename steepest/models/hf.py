"""A pretrained Hugging Face encoder with a classification/regression head, over token-id rows.

    model: {name: hf_encoder, pretrained: all-MiniLM-L6-v2}                     # fine-tune it
    model: {name: hf_encoder, pretrained: all-MiniLM-L6-v2, from_scratch: true} # same network, random weights
    finetune: {freeze: all_but_head}                                            # or: linear probe
    finetune: {lora: {r: 8, targets: ["*.query", "*.value"]}}                   # or: LoRA

Inputs are the ids `steepest.data.text` writes (float32, padded with the tokenizer's pad id); the
attention mask is `ids != pad`. The sentence vector is the masked mean of the last hidden states
(what all-MiniLM-L6-v2 was trained with) or the first token's state (`pooling: first`, BERT's [CLS]).
Parameter names are the transformers ones under `encoder.`, so `finetune` patterns, LoRA targets
and discriminative learning rates address the layers directly (`encoder.encoder.layer.5...`).
"""

from __future__ import annotations

import torch
from torch import nn

from steepest.hub import load_model


class PretrainedEncoder(nn.Module):
    def __init__(self, num_outputs: int, pretrained: str = "all-MiniLM-L6-v2", pooling: str = "mean",
                 dropout: float = 0.1, from_scratch: bool = False, input_shape=None):
        super().__init__()
        if pooling not in ("mean", "first"):
            raise ValueError(f"pooling must be 'mean' or 'first', got {pooling!r}")
        self.encoder = load_model(pretrained, "encoder", from_scratch=from_scratch)
        config = self.encoder.config
        self.pad_id = int(config.pad_token_id if config.pad_token_id is not None else 0)
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "first":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))
