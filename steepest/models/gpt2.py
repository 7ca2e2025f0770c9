"""GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"): a decoder-only
transformer over token ids. Pre-LayerNorm blocks (a LayerNorm before attention and before the MLP,
one after the last block), learned position embeddings, GELU with the tanh approximation, the output
layer tied to the token embedding (Press & Wolf 2017), and the residual projections initialized with
std 0.02 / sqrt(2 * n_layer) (the paper's 1/sqrt(N) scaling for N residual layers). Attention is
`torch.nn.functional.scaled_dot_product_attention(is_causal=True)`: the flash / memory-efficient
kernels on a GPU, the same softmax(Q K^T / sqrt(d) + causal mask) V everywhere.

Parameter names follow nanoGPT and Hugging Face's `GPT2LMHeadModel` (`wte`, `wpe`, `h.{i}.attn.c_attn`,
`h.{i}.mlp.c_proj`, `ln_f`, `lm_head`); Hugging Face stores `c_attn`/`c_proj`/`c_fc` as Conv1D, whose
weight is the transpose of the nn.Linear one here (`tests/models/test_gpt2.py` copies weights across
and checks logits and loss in float64).

    model: {name: gpt2_124m, vocab_size: 49152}                  # GPT-2 small: 12 layers, 12 heads, 768 wide
    model: {name: gpt2, n_layer: 2, n_head: 2, n_embd: 32, block_size: 64, vocab_size: 259}

    >>> model = GPT2(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=8)
    >>> model(torch.zeros(2, 16, dtype=torch.long)).shape        # ids (N, T) -> logits (N, T, vocab)
    torch.Size([2, 16, 50])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: x (N, T, C) -> (N, T, C), heads of width C / n_head."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # query, key, value in one matrix multiply
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = (z.view(n, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.c_attn(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(n, t, c)))


class MLP(nn.Module):
    """x (N, T, C) -> c_proj(GELU_tanh(c_fc(x))) (N, T, C), hidden width 4 C."""

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(.)): the pre-LayerNorm residual block."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 language model: token ids (N, T) (integers; a float tensor of ids is cast, as the data
    pipeline stores ids as float32) -> next-token logits (N, T, vocab_size), position t seeing
    positions <= t only. T may be at most `block_size` (ValueError otherwise). The defaults are
    GPT-2 small (124,439,808 parameters with the tied output layer counted once).

    `vocab_size`: the tokenizer's (50257 for GPT-2's BPE; a token file's `tokens.json` says which
    tokenizer wrote it); `block_size`: the positions the model has; `dropout` on embeddings, attention
    weights and residual branches (0 for pretraining at this scale, as nanoGPT); `bias`: biases in the
    Linear and LayerNorm layers (GPT-2 has them). Train it with the `next_token` loss on windows of a
    token file (`steepest.data.tokens.token_windows`; recipe `gpt2_tokens`).
    """

    def __init__(self, vocab_size: int = 50257, block_size: int = 1024, n_layer: int = 12, n_head: int = 12,
                 n_embd: int = 768, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        for key, value in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer), ("n_head", n_head), ("n_embd", n_embd)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive whole number, got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd = vocab_size, block_size, n_layer, n_head, n_embd
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one matrix embeds the input and scores the output
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization: every Linear and Embedding weight N(0, 0.02^2), biases 0, LayerNorms
        1 and 0, then the two residual projections of each block (attn.c_proj, mlp.c_proj)
        N(0, (0.02 / sqrt(2 n_layer))^2). Draws from torch's global generator."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.n_layer))

    @property
    def head(self) -> nn.Linear:
        """The output layer (hidden -> logits), under the name the alignment code reads (`steepest.align`)."""
        return self.lm_head

    @property
    def context_length(self) -> int:
        return self.block_size

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states (N, T, n_embd): after the last LayerNorm, before the output layer."""
        t = ids.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.block_size}; crop it or build a model with a larger block_size")
        ids = ids if ids.dtype == torch.long else ids.long()
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(t, device=ids.device)))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.features(ids))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters, the tied output layer counted once; `non_embedding` leaves out the position
        table (the token table stays: it is also the output layer, as nanoGPT counts)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Model FLOPs of one training token (forward and backward) at context `seq_len` (default
        block_size): 6 N + 12 n_layer n_embd T, N the non-embedding parameters (6 N for the weight
        matrix multiplies, 2 forward + 4 backward per parameter; 12 L C T for attention's Q K^T and
        its weighted sum over T positions). Kaplan et al. 2020 (table 1) / Hoffmann et al. 2022
        (Chinchilla, appendix F), as nanoGPT's `estimate_mfu` computes it."""
        t = self.block_size if seq_len is None else seq_len
        return 6 * self.num_parameters(non_embedding=True) + 12 * self.n_layer * self.n_embd * t
