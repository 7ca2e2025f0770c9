"""Typed recipes: YAML -> validated config, dotted overrides, one-line errors.

Names load on first use (`steepest.lazy`), so `steepest.config.arguments` (what every command's
parser needs) imports without pydantic and `steepest --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steepest.lazy import lazy_exports

_LOAD = "steepest.config.load"
__all__ = ["DEFAULT_RECIPE", "Recipe", "apply_overrides", "bundled_recipes", "load_recipe", "recipe_from_dict", "recipe_to_dict"]
__getattr__ = lazy_exports(__name__, {**{n: _LOAD for n in __all__}, "Recipe": "steepest.config.schema"})

if TYPE_CHECKING:
    from steepest.config.load import (
        DEFAULT_RECIPE,
        apply_overrides,
        bundled_recipes,
        load_recipe,
        recipe_from_dict,
        recipe_to_dict,
    )
    from steepest.config.schema import Recipe
