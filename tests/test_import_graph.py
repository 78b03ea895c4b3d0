"""The import graph, read from the source with ``ast`` (nothing is imported): no cycles among
module-level imports, and every import, lazy ones included, respects the layers::

    star_har.cli (the command)  >  star_har.train, star_har.realtime (never each other)
        >  star_har.pose  >  star_har.model  >  bottom modules (errors, files, args)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> import package (pyproject's package-dir mapping)
FOLDERS = {"star_har": "star_har", "model": "star_har.model", "train": "star_har.train",
           "realtime": "star_har.realtime"}
BOTTOM = {"star_har.errors", "star_har.files", "star_har.args"}
# which layers a layer may import (itself included)
ALLOWED = {
    "bottom": {"bottom"},
    "model": {"bottom", "model"},
    "pose": {"bottom", "model", "pose"},
    "train": {"bottom", "model", "pose", "train"},
    "realtime": {"bottom", "model", "pose", "realtime"},
    "api": {"bottom", "model", "pose", "train", "realtime", "api"},   # star_har/__init__, star_har.info
    "cli": {"bottom", "model", "pose", "train", "realtime", "api", "cli"},
}


def layer(module: str) -> str:
    if module in BOTTOM:
        return "bottom"
    if module == "star_har.cli":
        return "cli"
    if module == "star_har.pose":
        return "pose"
    for name in ("model", "train", "realtime"):
        if module == f"star_har.{name}" or module.startswith(f"star_har.{name}."):
            return name
    return "api"


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported star_har module, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        at_module_level = id(node) in top_level  # not in a function (lazy) nor a try block
        found += [(target, at_module_level) for target in targets if target.split(".")[0] == "star_har"]
    return found


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_the_graph_covers_the_package():
    assert {"star_har.cli", "star_har.model.checkpoint", "star_har.train.engine", "star_har.realtime.pipeline",
            "star_har.realtime.gui.cli"} <= GRAPH.keys()
    assert all(target in GRAPH for edges in GRAPH.values() for target, _ in edges), \
        sorted({t for edges in GRAPH.values() for t, _ in edges} - GRAPH.keys())


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_respect_the_layers(module):
    wrong = [target for target, _ in GRAPH[module] if layer(target) not in ALLOWED[layer(module)]]
    assert not wrong, f"{module} ({layer(module)}) must not import {wrong}"


def test_no_module_level_import_cycles():
    edges = {name: sorted({t for t, top in targets if top}) for name, targets in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in edges.get(node, []):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_checker_sees_violations(tmp_path):
    """The rules above would catch a cross-layer import (a test that cannot fail proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from star_har.train.engine import train\n\ndef f():\n    import star_har.cli\n")
    found = imports("star_har.realtime.bad", bad, set(GRAPH))
    assert ("star_har.train.engine", True) in found and ("star_har.cli", False) in found
    assert {layer(t) for t, _ in found} - ALLOWED["realtime"] == {"train", "cli"}
