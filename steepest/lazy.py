"""Packages whose public names load on first use (PEP 562), so that importing one of their light
modules (a command's argument declarations, the recipe schema) does not import torch.

    # in a package's __init__.py
    __getattr__ = lazy_exports(__name__, {"run_doctor": "steepest.diagnose.doctor"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `names[name]` (a module path) and returns its `name`."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
