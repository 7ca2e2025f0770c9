"""The repeated blocks of a model: what activation checkpointing recomputes and FSDP shards one by one."""

from __future__ import annotations

from torch import nn


def largest_block_list(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The Sequential/ModuleList with the most children (a transformer's layers, an MLP's layers), or None."""
    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) >= 2]
    return max(containers, key=lambda nm: len(nm[1]), default=None)


def parameter_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children of the largest block list that hold parameters, with their full names."""
    found = largest_block_list(model)
    if found is None:
        return []
    name, container = found
    return [(f"{name}.{child}" if name else child, m) for child, m in container.named_children()
            if any(True for _ in m.parameters())]
