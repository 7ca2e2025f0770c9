"""Typed recipes: YAML -> validated config, dotted overrides, one-line errors."""

from steepest.config.load import (
    DEFAULT_RECIPE,
    apply_overrides,
    bundled_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)
from steepest.config.schema import Recipe

__all__ = [
    "DEFAULT_RECIPE",
    "Recipe",
    "apply_overrides",
    "bundled_recipes",
    "load_recipe",
    "recipe_from_dict",
    "recipe_to_dict",
]
