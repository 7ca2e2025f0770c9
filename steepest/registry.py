"""One registry per family (optimizers, schedules, losses, models, datasets, callbacks).

A registry maps a recipe name to one record: the object that builds the component, its default
keyword arguments and free-form flags. Variants are data, not subclasses: register the same
class twice under different names with different defaults.

    >>> from steepest.registry import Registry
    >>> shapes = Registry("shape")
    >>> @shapes.register("square", defaults={"side": 1.0})
    ... def square(side: float) -> float:
    ...     return side * side
    >>> shapes.build("square", side=3.0)
    9.0
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from steepest.errors import ConfigError, unknown_choice


@dataclass(frozen=True)
class Record:
    name: str
    target: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


class Registry:
    def __init__(self, family: str):
        self.family = family
        self._records: dict[str, Record] = {}

    def register(
        self,
        name: str,
        target: Callable[..., Any] | None = None,
        *,
        defaults: dict[str, Any] | None = None,
        summary: str = "",
        **flags: Any,
    ):
        """Register `target` under `name`; usable as a decorator when `target` is omitted."""

        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._records:
                raise ValueError(f"{self.family} '{name}' is already registered")
            doc = summary or (inspect.getdoc(obj) or "").split("\n")[0]
            self._records[name] = Record(name, obj, dict(defaults or {}), flags, doc)
            return obj

        return add(target) if target is not None else add

    def __contains__(self, name: str) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._records))

    def names(self) -> list[str]:
        return sorted(self._records)

    def get(self, name: str, key: str | None = None) -> Record:
        try:
            return self._records[name]
        except KeyError:
            raise unknown_choice(key or self.family, name, self._records, self.family) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        record = self.get(name)
        return record.target(*args, **{**record.defaults, **kwargs})


def import_object(path: str, key: str = "component") -> Any:
    """Import 'package.module:attr' (or 'package.module.attr') and return the attribute."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{key}: '{path}' is not an import path; write it as 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module '{module_name}' ({exc}); check the path and PYTHONPATH") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise unknown_choice(key, f"{module_name}:{attr}", [f"{module_name}:{n}" for n in names], "attribute")
        obj = getattr(obj, part)
    return obj


def accepted_arguments(target: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword arguments `target` accepts, and whether it also takes **kwargs."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}, True
    params = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
            params[p.name] = p
    return params, var_kw
