"""Check a component's recipe keys against the signature of the object that will receive them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError

from steepest.config.schema import annotation_kinds
from steepest.errors import ConfigError, did_you_mean
from steepest.registry import accepted_arguments


def check_kwargs(where: str, target: Callable[..., Any], kwargs: dict[str, Any], injected: Iterable[str] = (),
                 fixed: Iterable[str] = (), section_keys: Iterable[str] = ()) -> None:
    """Unknown keys -> ConfigError listing the valid ones; values checked against type hints where
    the hints are plain types pydantic understands (inf and nan refused where a number is expected).

    `injected`: arguments the caller fills in (left out of the valid list); `fixed`: arguments the
    caller always sets itself, so a recipe key of that name is refused like an unknown one; `section_keys`: the
    recipe section's own keys (optimizer.lr), checked by the schema but listed as valid too."""
    params, var_kw = accepted_arguments(target)
    fixed = set(fixed)
    injected = set(injected) | fixed
    valid = sorted({*(k for k in params if k not in injected and k != "params"), *section_keys})
    for key in kwargs:
        if key in fixed or (key not in params and not var_kw):
            raise ConfigError(f"{where}.{key}: unknown argument;{did_you_mean(key, valid)} valid: {', '.join(valid) or '(none)'}")
    try:
        hints = get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:
        hints = {}
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is None:
            continue
        kinds = annotation_kinds(hint)
        if isinstance(value, bool) and not kinds & {bool, object} and kinds & {int, float}:  # lax mode reads true as 1
            number = "a whole number" if int in kinds and float not in kinds else "a number"
            raise ConfigError(f"{where}.{key}: expected {number}, not true/false (got {value!r})")
        try:
            adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False))
        except Exception:
            continue
        try:
            adapter.validate_python(value, strict=False)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise ConfigError(f"{where}.{key}: {msg} (got {value!r})") from None
