"""The package's layers, as ARCHITECTURE.md draws them, hold in the code: every import of a
steepest module (at module level or inside a function) goes to its own package or to a lower
layer, and no two modules import each other (directly or around a loop)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "steepest"


def layers() -> dict[str, int]:
    """package -> layer, read from the `LAYERS` block of ARCHITECTURE.md (lowest layer first)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```text\nLAYERS[^\n]*\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no ```text LAYERS block"
    out = {}
    for line in block.group(1).splitlines():
        number, _, names = line.strip().partition(" ")
        for name in names.split(","):
            out[name.strip()] = int(number)
    return out


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every steepest module `path` imports, wherever the import statement is, with its line."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]  # `from pkg import module`
    return [(t, line) for t, line in found if t and t.split(".")[0] == "steepest"]


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "steepest"


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_package_has_a_layer():
    layer = layers()
    missing = sorted({package_of(m).removesuffix(".py") for m in all_modules()} - set(layer))
    assert not missing, f"add these to the LAYERS block of ARCHITECTURE.md: {missing}"


def test_no_import_goes_up_a_layer():
    layer, modules = layers(), all_modules()
    upward = []
    for name, path in modules.items():
        here = package_of(name)
        for target, line in imports(path):
            if target not in modules:  # `from pkg import name` where name is not a module
                continue
            there = package_of(target)
            if there != here and layer[there] >= layer[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {layer[there]} >= {here}'s {layer[here]})")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    modules = all_modules()
    graph = {name: {t for t, _ in imports(path) if t in modules and t != name} for name, path in modules.items()}
    # A module importing its own package's __init__ is how packages re-export; the __init__ importing it back is not a loop of logic.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other: {cycles}"
