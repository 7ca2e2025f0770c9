"""Mixed precision: autocast contexts and the fp16 gradient scaler."""

from __future__ import annotations

import contextlib

import torch

from steepest.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP16_SECOND_ORDER = ("optimizer adahessian with trainer.precision=fp16: its Hessian estimate would be taken of the loss-scaled "
                     "gradients, which the fp16 scaler cannot check for overflow; use trainer.precision=bf16 (no scaler) or fp32")


def autocast(device: torch.device, precision: str):
    """Autocast to bf16/fp16 for the forward pass; a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (whose small exponent range needs loss scaling); None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device: '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: cuda requested but no CUDA GPU is available; use trainer.device=cpu")
    return device
