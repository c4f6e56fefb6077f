"""The package's modules import each other without circles, and the layers point one way.

The graph is read from the source with `ast`: every `import` / `from ... import` statement, also those inside
functions (a lazy import is still a dependency), except under `if TYPE_CHECKING:`. Importing
`a.b.c` also runs the `__init__` of `a.b` (when the importer lives outside it), so that is an edge too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "spic_diffusers"


def _module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import statements outside `if TYPE_CHECKING:` blocks, at any depth."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (directly, or through a package `__init__`)."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets.append(base)
            targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
        for target in targets:
            if target not in modules:
                continue  # another distribution, or a name inside a module
            parts = target.split(".")
            for depth in range(1, len(parts) + 1):  # the target and the package __init__s it runs first
                step = ".".join(parts[:depth])
                if step in modules and not (name == step or name.startswith(step + ".")) and step != name:
                    graph[name].add(step)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE_ROOT)
    assert len(graph) > 30 and "spic_diffusers.labels" in graph
    assert find_cycles(graph) == []


def test_layers_point_one_way():
    graph = import_graph(PACKAGE_ROOT)
    assert graph["spic_diffusers.labels"] == set(), "the label table imports nothing of the package"
    for name, targets in graph.items():
        if name.startswith("spic_diffusers.codec"):
            assert not any(t.startswith("spic_diffusers.data") for t in targets), f"{name} imports the data layer"
    # the edges this test was written against exist (so a broken resolver cannot pass silently)
    assert "spic_diffusers.labels" in graph["spic_diffusers.codec.transmitter"]
    assert "spic_diffusers.codec" in graph["spic_diffusers.data.cityscapes"]  # data may use the codec
    assert "spic_diffusers.image_processing" in graph["spic_diffusers.data.transforms"]


def test_cycle_finder_finds_lazy_and_package_cycles(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from .b import thing\n")
    (root / "sub" / "b.py").write_text("thing = 1\n")
    (root / "a.py").write_text("def f():\n    from .sub import thing\n")
    (root / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    assert find_cycles(import_graph(root)) == []
    (root / "sub" / "b.py").write_text("def g():\n    from ..a import f\nthing = 1\n")
    assert find_cycles(import_graph(root)) == [["pkg.a", "pkg.sub", "pkg.sub.b"]]


@pytest.mark.parametrize("module", ["spic_diffusers.data.cityscapes", "spic_diffusers.data"])
def test_label_table_names_are_still_exported_by_the_data_layer(module):
    import importlib

    from spic_diffusers import labels

    data = importlib.import_module(module)
    for name in ("ID2LABEL", "LABEL2ID", "IGNORE_INDEX", "NUM_CLASSES", "TRAIN_ID_COLORS", "CITYSCAPES_LABELS",
                 "label_ids_to_train_ids", "train_ids_to_color", "color_to_train_ids", "validate_train_ids"):
        assert getattr(data, name) is getattr(labels, name)
