"""LoRA: low-rank adaptation of frozen linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
Large Language Models").

A frozen weight W0 (out x in) gets a trainable update of rank r:

    h = W0 x + b + (alpha / r) * B A dropout(x)        A: r x in (Kaiming-uniform), B: out x r (zeros)

B starts at zero, so the adapted model starts as the pretrained one; only A and B train
(r (in + out) parameters per layer instead of in x out). `merge_lora` folds the update into W0
(W = W0 + (alpha / r) B A) and gives back plain nn.Linear layers for deployment: same outputs, no
extra latency. The initialization and scaling match Hugging Face PEFT's defaults, so adapters are
interchangeable with PEFT's (`lora_A.weight` = A, `lora_B.weight` = B).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> x = torch.randn(4, 8)
    >>> before = model(x)
    >>> names = apply_lora(model, r=2, alpha=4)
    >>> names, torch.allclose(model(x), before)            # B = 0: the pretrained function
    (['0', '2'], True)
    >>> sum(p.numel() for p in model.parameters() if p.requires_grad)   # 2 * (8 + 8) + 2 * (8 + 2)
    52
"""

from __future__ import annotations

import copy
import fnmatch
import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (alpha / r) B A."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.base, self.r, self.alpha = base, int(r), float(alpha)
        self.scaling = self.alpha / self.r
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for p in self.base.parameters():
            p.requires_grad_(False)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The frozen weight (what code that reads `layer.weight` expects)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A: the update as a dense out x in matrix."""
        return self.lora_B.weight @ self.lora_A.weight * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain nn.Linear with W0 + (alpha / r) B A."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        out.weight.copy_(self.base.weight + self.delta_weight().to(self.base.weight.dtype))
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        return out

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}"


def _matches(name: str, module: nn.Module, targets: list[str]) -> bool:
    """A target is a module name pattern (fnmatch: "encoder.*.linear1") or a class name ("Linear")."""
    return any(fnmatch.fnmatchcase(name, t) or type(module).__name__ == t for t in targets)


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
               targets: list[str] | tuple[str, ...] = ("Linear",), exclude: list[str] | tuple[str, ...] = (),
               train: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Swap every nn.Linear matching `targets` (and not `exclude`) for a LoRALinear, in place; freeze
    every other parameter except those under the module-name prefixes in `train` (e.g. a new head).
    Layers adapted already (and their own base and factor layers) are left alone. Returns the names
    of the adapted layers; raises ValueError when nothing matches (or everything is adapted already)."""
    adapted = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    inside = lambda name: any(name.startswith(a + ".") for a in adapted)  # noqa: E731  (a LoRALinear's own base and factors)
    chosen = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear) and name and not inside(name)
              and _matches(name, m, list(targets)) and not _matches(name, m, list(exclude))
              and not any(name == t or name.startswith(t + ".") for t in train)]
    if not chosen:
        if adapted:
            raise ValueError(f"the model's layers are LoRA-adapted already ({', '.join(adapted[:6])}); apply_lora once per model, "
                             "or merge_lora first to adapt the merged weights again")
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"no nn.Linear layer matches targets {list(targets)}; the model's linear layers: {linear[:12]}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in chosen:
        _set_submodule(model, name, LoRALinear(module, r, alpha, dropout))
    for name, p in model.named_parameters():
        if ".lora_A." in f".{name}" or ".lora_B." in f".{name}" or any(name.startswith(t + ".") for t in train):
            p.requires_grad_(True)
    return [name for name, _ in chosen]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear into a plain nn.Linear (in place); returns the model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            _set_submodule(model, name, module.merged())
    return model


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state of `model` with every adapter folded in (plain-layer names), the model itself untouched."""
    return merge_lora(copy.deepcopy(model)).state_dict()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters (and nothing frozen): what a fine-tuned LoRA run needs to ship."""
    return {k: v for k, v in model.state_dict().items() if ".lora_A." in f".{k}" or ".lora_B." in f".{k}"}


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
