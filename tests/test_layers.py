"""The house in layers (docs/development.md): panet/ holds at most 12 entries, each entry is a
layer, and a module imports only from its own layer or the layers listed before it; the import
graph of panet's modules has no cycle. Imports are read from the source (every `import`, lazy
ones inside functions included), not executed."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "panet"
# The layers, bottom first: a module may import its own layer and the ones before it.
LAYERS = ("base", "models", "data", "training", "evaluation", "settings", "weights", "run",
          "report", "reproduce", "inference")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Set[str]:
    """The panet modules `path` imports (absolute or relative, at any depth of the file)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from package import submodule` depends on the submodule; other names on target
            named = {f"{target}.{alias.name}" for alias in node.names}
            found.update(named & modules)
            if named - modules:
                found.add(target)
    return {target for target in found if target in modules and target != name}


def layer(module: str) -> str:
    return module.split(".")[1].removesuffix(".py")


def graph() -> Dict[str, Set[str]]:
    return {module_name(path): imported_modules(path) for path in PACKAGE.rglob("*.py")
            if module_name(path) != "panet"}


def test_panet_holds_at_most_twelve_entries_each_a_layer():
    entries = sorted(p.name.removesuffix(".py") for p in PACKAGE.iterdir()
                     if p.name != "__pycache__")
    assert len(entries) <= 12, entries
    assert set(entries) - {"__init__"} == set(LAYERS)


def test_no_module_imports_a_layer_listed_after_its_own():
    upward = [f"{module} imports {target}" for module, targets in graph().items()
              for target in targets if LAYERS.index(layer(target)) > LAYERS.index(layer(module))]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_development_guide_lists_the_layers_in_this_order():
    text = (REPO_ROOT / "docs" / "development.md").read_text()
    listed = re.findall(r"^\s{4}panet/(\w+)(?:/|\.py)", text, flags=re.MULTILINE)
    assert tuple(name for name in listed if name in LAYERS) == LAYERS
