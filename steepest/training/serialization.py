"""Nested state (dicts, lists, tuples, tensors, numpy arrays, scalars) <-> flat tensors + JSON.

Checkpoints store the tensors with safetensors and the structure as JSON, so loading one never
unpickles anything: a checkpoint can only ever produce tensors and plain values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_TENSOR, _NDARRAY, _TUPLE, _DICT = "__tensor__", "__ndarray__", "__tuple__", "__dict__"


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Return a JSON-able skeleton of `obj`; tensors are moved into `tensors` under dotted keys."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "_"
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        key = prefix or "_"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {_NDARRAY: key, "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten(v, tensors, f"{prefix}.{k}" if prefix else k) for k, v in obj.items()}
        return {_DICT: [[k, flatten(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (at '{prefix}')")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _NDARRAY in skeleton:
            return tensors[skeleton[_NDARRAY]].numpy().astype(skeleton["dtype"], copy=False)
        if _TUPLE in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
        if _DICT in skeleton:
            return {k: unflatten(v, tensors) for k, v in skeleton[_DICT]}
        return {k: unflatten(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton
