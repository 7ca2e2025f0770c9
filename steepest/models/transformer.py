"""Transformers (Vaswani et al. 2017): an encoder for sequence classification/regression over
(N, T, F) features, and a small causal language model over token ids with tied embeddings."""

from __future__ import annotations

import torch
from torch import nn


class TransformerEncoderModel(nn.Module):
    """Pre-norm encoder, learned positions, mean-pooled head. Inputs: features (N, T, F), a series (N, T),
    or token ids (N, T) when `vocab_size` is set (an embedding replaces the input projection).

    >>> TransformerEncoderModel((16, 3), 5)(torch.zeros(2, 16, 3)).shape
    torch.Size([2, 5])
    """

    def __init__(self, input_shape, num_outputs: int, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int = 128,
                 dropout: float = 0.1, max_len: int = 512, vocab_size: int | None = None):
        super().__init__()
        features = input_shape[-1] if len(input_shape) == 2 else 1
        self.vocab_size = vocab_size
        self.proj = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(features, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)

    def forward(self, x):
        if self.vocab_size:
            x = x.long()  # token ids (stored as floats by the data pipeline)
        elif x.dim() == 2:
            x = x.unsqueeze(-1)
        h = self.proj(x) + self.pos[:, : x.shape[1]]
        return self.head(self.norm(self.encoder(h)).mean(1))


class CausalLM(nn.Module):
    """Next-token prediction: ids (N, T) -> logits (N, T, vocab); the output layer shares the embedding
    (Press & Wolf 2017). Pre-norm blocks with a causal mask: position t sees positions <= t only.

    >>> CausalLM(vocab_size=50, d_model=32)(torch.zeros(2, 8, dtype=torch.long)).shape
    torch.Size([2, 8, 50])
    """

    def __init__(self, vocab_size: int, d_model: int = 128, heads: int = 4, layers: int = 2, ff: int = 512,
                 dropout: float = 0.1, max_len: int = 256, input_shape=None, num_outputs=None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied embeddings

    def features(self, ids):
        """The final hidden states (N, T, d_model), before the output layer (a reward model's input)."""
        ids = ids.long()
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        h = self.embed(ids) + self.pos(torch.arange(t, device=ids.device))
        return self.norm(self.blocks(h, mask=mask, is_causal=True))

    def forward(self, ids):
        return self.head(self.features(ids))


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of predicting ids[:, t+1] from logits[:, t] (the causal LM objective)."""
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1).long(),
                                       ignore_index=ignore_index)
