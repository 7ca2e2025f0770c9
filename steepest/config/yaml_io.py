"""Recipe files: safe YAML only, with floats written like 1e-3 read as numbers.

Before anything is constructed, the parsed document is checked: a key given twice in one mapping
is refused (YAML would keep the last silently), and so is an alias that refers to itself or
aliases that expand the document by more than `MAX_ALIAS_VALUES` values (a "billion laughs"
document of a few hundred bytes would otherwise grow to gigabytes when the recipe is printed or
saved). Merge keys (`<<: *base`) are not duplicates: the mapping's own keys override merged ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from steepest.errors import ConfigError


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` (no dot) as a float, as YAML 1.2 does, and checks each
    document (`check_document`) before constructing it."""

    def construct_document(self, node: yaml.Node) -> Any:
        check_document(node)
        return super().construct_document(node)


_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"
)
_RecipeLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

MAX_ALIAS_VALUES = 10_000  # values aliases may add to a document beyond those written out
MERGE = "tag:yaml.org,2002:merge"


class RecipeYAMLError(yaml.YAMLError):
    """A document that parses but is refused: a duplicate key, a recursive alias, an alias bomb."""


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def check_document(root: yaml.Node) -> None:
    """Refuse duplicate keys, recursive aliases and alias expansion past `MAX_ALIAS_VALUES`.
    Visits each node once (aliases share nodes), so the cost is the size of the text."""
    sizes: dict[int, int] = {}  # id(node) -> values in its expansion (aliases expanded)
    open_nodes: set[int] = set()

    def size(node: yaml.Node, path: str) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise RecipeYAMLError(f"{path or 'the document'} (line {_line(node)}): an alias refers to itself; "
                                  "recipes cannot be recursive")
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, f"{path}.{i}".lstrip(".")) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                here = f"{path}.{key.value}".lstrip(".") if isinstance(key, yaml.ScalarNode) else path
                if isinstance(key, yaml.ScalarNode) and key.tag != MERGE:
                    if (key.tag, key.value) in seen:
                        first, again = seen[key.tag, key.value], _line(key)
                        lines = f"line {first}" if first == again else f"lines {first} and {again}"
                        raise RecipeYAMLError(f"{here}: key '{key.value}' is given twice ({lines}); keep one")
                    seen[key.tag, key.value] = _line(key)
                total += size(key, here) + size(value, here)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root, "")
    if expanded - len(sizes) > MAX_ALIAS_VALUES:
        raise RecipeYAMLError(f"aliases expand the document to {expanded:,} values from {len(sizes):,} written "
                              f"(at most {MAX_ALIAS_VALUES:,} more are allowed); write the values out or reuse an anchor less")


def parse_yaml(text: str, source: str = "recipe") -> Any:
    """Parse YAML text with the safe loader; any tag beyond plain YAML is refused, and so are
    duplicate keys and runaway aliases (`check_document`). Errors: ConfigError naming `source`."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # _RecipeLoader is a SafeLoader subclass
    except RecipeYAMLError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply; recipes are a few levels deep") from None
    except yaml.constructor.ConstructorError as exc:
        tag = getattr(exc, "problem", "") or str(exc)
        raise ConfigError(f"{source}: refused YAML ({tag.strip()}); recipes may contain only plain YAML values") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: {problem}{where}; fix the YAML syntax") from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file '{path}' does not exist; give a path or a bundled recipe name (steepest recipes)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recipe '{path}': {exc}") from None
    return parse_yaml(text, str(path))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
