"""Start from pretrained weights: a finished steepest run, a .safetensors file, a Hugging Face
model directory saved with safetensors, or a registered pretrained vision model (steepest.hub:
`efficientnet-lite0`, a state dict read with torch's tensors-only loader). Never unpickles anything.

Tensors load by name where the shapes agree. A head whose shape differs (another number of classes)
keeps its fresh initialization, which is what transfer learning wants; the report says which
tensors loaded and which did not, and loading nothing at all is an error (wrong model or file).

    >>> import torch, tempfile, os
    >>> from safetensors.torch import save_file
    >>> source = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file(source.state_dict(), path)
    >>> target = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> report = load_pretrained(target, path)
    >>> report.loaded, report.shape_mismatch
    (['0.bias', '0.weight'], ['2.bias', '2.weight'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from steepest.errors import CheckpointError
from steepest.hub import load_state_dict, vision_weights


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)  # kept their fresh initialization
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unused: list[str] = field(default_factory=list)  # in the file, not in the model

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.shape_mismatch:
            parts.append(f"kept fresh (shape differs): {', '.join(self.shape_mismatch)}")
        if self.missing:
            parts.append(f"not in the file: {', '.join(self.missing[:8])}{' ...' if len(self.missing) > 8 else ''}")
        return "; ".join(parts)


def weights_file(source: str | Path) -> Path:
    """The safetensors file behind `source`: a file, a run directory (model.safetensors), or a
    directory with model.safetensors."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise CheckpointError(f"finetune.pretrained: {source} has no weights (expected a .safetensors file or a finished run "
                              "directory with model.safetensors: steepest train --run-dir DIR)")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"finetune.pretrained: {path} is not a .safetensors file; convert it with safetensors.torch.save_file "
                              "(pickled .pt/.bin files are not loaded: they can run code)")
    return path


def source_tensors(source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of `source` (a registered vision model's name, or what `weights_file` accepts)
    and how to name it in a report."""
    if vision_weights(str(source)) is not None:
        return load_state_dict(str(source)), str(source)
    path = weights_file(source)
    try:
        return load_file(str(path)), str(path)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"finetune.pretrained: {path} is unreadable ({exc})") from None


def load_pretrained(model: nn.Module, source: str | Path, skip: list[str] | tuple[str, ...] = (),
                    prefix: str = "") -> LoadReport:
    """Copy tensors from `source` into `model` by name (after removing `prefix` from the file's
    names) where shapes agree; names starting with an entry of `skip` are left alone. `source`: a
    .safetensors file, a run directory, or a registered vision model (`efficientnet-lite0`)."""
    tensors, path = source_tensors(source)
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = model.state_dict()
    report = LoadReport(path)
    with torch.no_grad():
        for name, target in own.items():
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            if name not in tensors:
                report.missing.append(name)
            elif tuple(tensors[name].shape) != tuple(target.shape):
                report.shape_mismatch.append(name)
            else:
                target.copy_(tensors[name].to(target.dtype))
                report.loaded.append(name)
    report.unused = sorted(set(tensors) - set(own))
    report.loaded.sort()
    report.shape_mismatch.sort()
    if not report.loaded:
        weights = vision_weights(str(source))
        fix = f"use model: {{name: {weights.model}}}" if weights is not None else "pretrain the same architecture"
        raise CheckpointError(f"finetune.pretrained: no tensor of {path} fits this model (names or shapes differ: the file has "
                              f"{sorted(tensors)[:6]}, the model {sorted(own)[:6]}); {fix}")
    return report
