"""One registry per family (optimizers, schedules, losses, models, datasets, callbacks, commands).

A registry maps a recipe name to one record: the object that builds the component, its default
keyword arguments and free-form flags. Variants are data, not subclasses: register the same
class twice under different names with different defaults.

A record's target is the object itself or its import path ("package.module:Name"), imported the
first time the target is used. Every row of a family is written in the family's registry module,
so every name is known (to `steepest validate`, to error messages that list the valid names) before
any module that implements one is imported, and importing one module never changes what a
registry holds.

    >>> from steepest.registry import Registry
    >>> shapes = Registry("shape")
    >>> @shapes.register("square", defaults={"side": 1.0})
    ... def square(side: float) -> float:
    ...     return side * side
    >>> shapes.build("square", side=3.0)
    9.0
    >>> _ = shapes.register("root", "math:sqrt", summary="Square root (resolved on first use).")
    >>> shapes.build("root", 9.0)
    3.0
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from steepest.errors import ConfigError, unknown_choice


class Record:
    """One row: `name`, `target` (resolved from its import path on first access), `defaults`,
    `flags`, and a one-line `summary` (the target's first docstring line unless given)."""

    __slots__ = ("_summary", "_target", "defaults", "flags", "name")

    def __init__(self, name: str, target: Callable[..., Any] | str, defaults: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None, summary: str = ""):
        self.name, self._target = name, target
        self.defaults, self.flags, self._summary = dict(defaults or {}), dict(flags or {}), summary

    @property
    def target(self) -> Callable[..., Any]:
        if isinstance(self._target, str):
            self._target = import_object(self._target, self.name)
        return self._target

    @property
    def path(self) -> str:
        """The target's import path ('module:qualname')."""
        if isinstance(self._target, str):
            return self._target
        return f"{self._target.__module__}:{getattr(self._target, '__qualname__', self._target.__class__.__name__)}"

    @property
    def summary(self) -> str:
        if not self._summary:
            self._summary = (inspect.getdoc(self.target) or "").split("\n")[0]
        return self._summary

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.path!r})"


class Registry:
    def __init__(self, family: str):
        self.family = family
        self._records: dict[str, Record] = {}

    def register(
        self,
        name: str,
        target: Callable[..., Any] | str | None = None,
        *,
        defaults: dict[str, Any] | None = None,
        summary: str = "",
        **flags: Any,
    ):
        """Register `target` (an object or its import path) under `name`; usable as a decorator
        when `target` is omitted."""

        def add(obj: Callable[..., Any] | str) -> Callable[..., Any] | str:
            if name in self._records:
                raise ValueError(f"{self.family} '{name}' is already registered")
            self._records[name] = Record(name, obj, defaults, flags, summary)
            return obj

        return add(target) if target is not None else add

    def __contains__(self, name: str) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def names(self) -> list[str]:
        return sorted(self._records)

    def in_order(self) -> list[str]:
        """The names in the order they were registered."""
        return list(self._records)

    def get(self, name: str, key: str | None = None) -> Record:
        try:
            return self._records[name]
        except (KeyError, TypeError):
            raise unknown_choice(key or self.family, name, self._records, self.family) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        record = self.get(name)
        return record.target(*args, **{**record.defaults, **kwargs})


def import_object(path: str, key: str = "component") -> Any:
    """Import 'package.module:attr' (or 'package.module.attr') and return the attribute.

    This runs the module's code: an import path from a recipe is code, to be resolved only for a
    recipe the user trusts (see `steepest.config.load.load_run_recipe`). Errors: ConfigError naming
    `key` for a malformed path, a module that cannot be found or fails while importing (its own
    exception, in one line), or a missing attribute."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{key}: '{path}' is not an import path; write it as 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module '{module_name}' ({exc}); check the path and PYTHONPATH") from None
    except Exception as exc:  # the module's own code failed (SyntaxError, an error at import time)
        raise ConfigError(f"{key}: importing module '{module_name}' failed ({type(exc).__name__}: {exc}); "
                          "fix that module") from None
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
