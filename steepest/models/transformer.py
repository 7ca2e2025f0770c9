"""Transformers (Vaswani et al. 2017): an encoder for sequence classification/regression over
(N, T, F) features, and a small causal language model over token ids with tied embeddings."""

from __future__ import annotations

import torch
from torch import nn

from steepest.models._registry import MODELS


@MODELS.register("transformer_encoder")
class TransformerEncoderModel(nn.Module):
    def __init__(self, input_shape, num_outputs: int, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int = 128,
                 dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        features = input_shape[-1] if len(input_shape) == 2 else 1
        self.proj = nn.Linear(features, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        h = self.proj(x) + self.pos[:, : x.shape[1]]
        return self.head(self.norm(self.encoder(h)).mean(1))


@MODELS.register("causal_lm")
class CausalLM(nn.Module):
    """Next-token prediction: ids (N, T) -> logits (N, T, vocab); the output layer shares the embedding."""

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

    def forward(self, ids):
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        h = self.embed(ids) + self.pos(torch.arange(t, device=ids.device))
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))
