"""Recipe -> validated `Recipe`: read YAML, apply dotted overrides, report the first problem in one line."""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from steepest.config.schema import Recipe, check_finite
from steepest.config.yaml_io import parse_yaml, read_yaml
from steepest.errors import ConfigError, did_you_mean

DEFAULT_RECIPE = "digits_mlp"


def bundled_recipes() -> dict[str, Path]:
    """Bundled recipe names -> files (the `recipes/` folder inside the package)."""
    folder = resources.files("steepest") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_recipe_path(recipe: str | None) -> Path:
    if recipe is None:
        recipe = DEFAULT_RECIPE
    path = Path(recipe)
    if path.exists():
        return path
    bundled = bundled_recipes()
    if recipe in bundled:
        return bundled[recipe]
    if path.suffix in (".yaml", ".yml") or "/" in recipe:
        raise ConfigError(f"recipe file '{recipe}' does not exist; give a path or a bundled recipe name (steepest recipes)")
    raise ConfigError(
        f"recipe '{recipe}' is neither a file nor a bundled recipe;{did_you_mean(recipe, bundled)}"
        f" bundled: {', '.join(sorted(bundled))}"
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars/lists (`1e-3`, `[64, 32]`, `null`)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not KEY=VALUE; write it like --set optimizer.lr=1e-3")
        if not raw.strip():  # an unset shell variable (--set optimizer.lr=$LR) must not quietly unset the key
            raise ConfigError(f"override '{item}' has no value after '='; give a value, or null to unset it (--set {key}=null)")
        value = parse_yaml(raw, f"override {key}")
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{key}': '{'.'.join(parts[: i + 1])}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _model_for(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at `loc` (for listing valid keys)."""
    cls: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for c in candidates:
            for cc in (c, *getattr(c, "__args__", ())):
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    cls = cc
                    break
            else:
                continue
            break
        else:
            return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


# The parts of an error's location that pydantic adds for the members of a union (`batch_size:
# PositiveInt | Literal["full"]` gives data.batch_size.constrained-int) and for validator functions:
# not recipe keys, so left out of the dotted key a message names.
_TAGS = re.compile(r"^(?:function-\w+\[.*\]|constrained-\w+|literal\[.*\]|\w+\[.*\]|bool|int|float|str|none|[A-Z]\w*)$")


def _recipe_loc(err: dict) -> tuple:
    loc = tuple(err["loc"])
    last = len(loc) - 1 if err["type"] == "extra_forbidden" else len(loc)  # an unknown key is the user's, whatever it is
    return tuple(p for i, p in enumerate(loc) if i >= last or not (isinstance(p, str) and _TAGS.match(p)))


def format_validation_error(exc: ValidationError, root: type[BaseModel] = Recipe) -> str:
    errors = exc.errors()
    err = errors[0]
    if err["type"] == "literal_error" and isinstance(err.get("input"), dict | list):  # a union's named choices do not
        err = next((e for e in errors if e["type"] != "literal_error"), err)  # fit a mapping: say what is wrong inside it
    loc = _recipe_loc(err)
    key = ".".join(str(p) for p in loc) or "recipe"
    if err["type"] == "extra_forbidden":
        owner = _model_for(loc, root)
        valid = sorted(owner.model_fields) if owner else []
        hint = did_you_mean(str(loc[-1]), valid)
        listing = f" valid keys: {', '.join(valid)}" if valid else ""
        return f"{key}: unknown key;{hint}{listing}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    shown = "" if isinstance(given, dict | list) or err["type"] == "missing" else f" (got {given!r})"
    return f"{key}: {msg}{shown}"


def recipe_from_dict(data: Any, source: str = "recipe") -> Recipe:
    """Plain recipe data -> `Recipe`. ConfigError naming the first wrong key: unknown keys, wrong
    types, out-of-range values, inf or nan anywhere."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections (data, model, optimizer, ...)")
    check_finite(data)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        key_error = _key_error(exc, source)
        raise ConfigError(key_error or format_validation_error(exc)) from None


def _key_error(exc: ValidationError, source: str) -> str | None:
    """The message for a mapping key that is not a string (YAML reads `~:` as null, `1:` as a
    number and `yes:`/`on:` as true): it names the file, where the key is, and the fix."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    if err["type"] == "invalid_key":
        parent, key = loc[:-1], err.get("input")
    elif loc and loc[-1] == "[key]":
        parent, key = loc[:-2], loc[-2]
    else:
        return None
    where = f"under '{'.'.join(map(str, parent))}'" if parent else "at the top level"
    return (f"{source}: the key {key!r} {where} is not a string (YAML reads ~ as null, 1 as a number, yes/on as true); "
            "quote the key or remove it")


def load_recipe(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file or bundled name, apply overrides, and validate the schema."""
    path = resolve_recipe_path(None if recipe is None else str(recipe))
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections (data, model, optimizer, ...)")
    data = apply_overrides(data, overrides or [])
    result = recipe_from_dict(data, str(path))
    if result.name is None:
        result.name = path.stem
    return result


# steepest's own components that a bundled recipe names by import path; allowed from a run directory
# like registry names (each only reads the files its options name, as a data set does)
OWN_COMPONENTS = frozenset({"steepest.data.tokens:token_windows"})


def load_run_recipe(path: str | Path, overrides: list[str] | None = None, *, trust_code: bool = False) -> Recipe:
    """The recipe stored in a run directory (`path`: its config.yaml), with `overrides` applied.

    A run directory may come from anyone, and a recipe's `component:` paths are code that building
    it imports and runs (`component: os:system` runs a shell command). Unless `trust_code` (the
    command line's --trust-code), a recipe with any such path is refused before anything is
    imported: ConfigError naming the key, the path and the flag. Registry names, and steepest's own
    components in `OWN_COMPONENTS`, are always allowed.
    """
    recipe = load_recipe(path, overrides)
    paths = [(key, target) for key, target in recipe.component_paths() if target not in OWN_COMPONENTS]
    if paths and not trust_code:
        key, target = paths[0]
        raise ConfigError(f"{key}: '{target}' is code, and {path} comes from a run directory; steepest imports only "
                          "registered names from one unless you pass --trust-code (trust_code=True in Python; only if you trust its author)")
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (what config.yaml and every checkpoint store)."""
    return recipe.model_dump(mode="json", exclude_none=False)
