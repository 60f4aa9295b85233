"""The import graph of fastcnn: no cycles, and imports run one way.

Every ``import`` statement in the package counts, at module level or inside a
function (a function-level import is still a dependency; it only hides a cycle until
the function runs), except those under ``if TYPE_CHECKING:``. ``from a import b``
is an edge to ``a.b`` where that is a module, else to ``a``. Importing ``a.b`` also
runs ``a/__init__.py``, but that implicit edge is left out, as import-linter
(grimp) does: counting it would put the public facade ``fastcnn/__init__.py`` in
every cycle.

Run as a script to print the cycles and the edges that go against the layers::

    python tests/test_import_graph.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fastcnn"

#: Layers, lowest first: a module may import modules of its own layer or below.
#: Modules outside every prefix are support code (``fastcnn._config``,
#: ``fastcnn.random``, ``fastcnn.datasets``...), free to be imported from anywhere;
#: they in turn may import only other support code and kernels (checked below).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("kernels", ("fastcnn.kernels",)),
    ("backend", ("fastcnn.backend",)),
    ("functional", ("fastcnn.functional",)),
    ("layers", ("fastcnn.layers", "fastcnn.initializers")),
    ("model/training", (
        "fastcnn.model", "fastcnn.network", "fastcnn.graph", "fastcnn.training",
        "fastcnn.losses", "fastcnn.metrics",
        "fastcnn.optimizers", "fastcnn.schedules", "fastcnn.callbacks",
        "fastcnn.distributed", "fastcnn.models", "fastcnn.modern_models",
        "fastcnn.inspect",
        "fastcnn.warmup", "fastcnn._warmup_worker",
        # Writes model files for Sequential.save, needing no more than the model
        # does (reading them, fastcnn.saving, builds models: a layer up).
        "fastcnn._model_writer",
    )),
    ("io, CLI", (
        "fastcnn.saving", "fastcnn.io", "fastcnn.plot", "fastcnn.__main__",
        "fastcnn._cli_checks", "fastcnn",
    )),
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return hidden


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The fastcnn modules ``name`` (at ``path``) imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            # "import fastcnn.io.npz" names a module; trim to the deepest known one.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for node in sorted(edges):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def layer_of(name: str) -> int | None:
    """The index of ``name``'s layer in :data:`LAYERS`, or None for support code.
    The longest matching prefix wins (``fastcnn`` itself is the top)."""
    best, best_len = None, -1
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The root package is only its facade, __init__.py, not its children.
            matches = name == prefix or (prefix != "fastcnn"
                                         and name.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def upward_edges(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports that go against the layers: a module importing a higher layer, or
    support code importing anything layered above the kernels."""
    wrong = []
    for source, targets in sorted(edges.items()):
        here = layer_of(source)
        for target in sorted(targets):
            there = layer_of(target)
            if there is None:
                continue
            if (here is None and there > 0) or (here is not None and there > here):
                wrong.append((source, target))
    return wrong


# ------------------------------------------------------------------------ tests


def test_the_package_has_no_import_cycle():
    found = cycles(graph())
    assert found == [], f"import cycles among fastcnn modules: {found}"


def test_imports_go_one_way_kernels_backend_functional_layers_model_io():
    wrong = upward_edges(graph())
    assert wrong == [], (
        "imports against the direction kernels <- backend <- functional <- layers "
        f"<- model/training <- io, CLI: {wrong}"
    )


def test_the_graph_is_not_trivially_empty():
    edges = graph()
    assert "fastcnn.model" in edges and "fastcnn.kernels._jit" in edges
    assert sum(map(len, edges.values())) > 100
    # A function-level import is an edge too.
    assert "fastcnn._model_writer" in edges["fastcnn.network"]


def test_an_injected_cycle_and_an_upward_import_are_caught(tmp_path):
    root = tmp_path / "fastcnn"
    (root / "kernels").mkdir(parents=True)
    (root / "__init__.py").write_text("from . import model\n")
    (root / "kernels" / "__init__.py").write_text("")
    (root / "kernels" / "cpu.py").write_text(
        "def late():\n    from ..model import fit\n")
    (root / "model.py").write_text("from .kernels import cpu\n")
    (root / "saving.py").write_text("from .model import fit\n")
    (root / "typing_only.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from .saving import x\n")
    edges = graph(root)
    assert edges["fastcnn.typing_only"] == set()
    assert cycles(edges) == [["fastcnn.kernels.cpu", "fastcnn.model"]]
    assert upward_edges(edges) == [("fastcnn.kernels.cpu", "fastcnn.model")]


def _report() -> int:
    edges = graph()
    found, wrong = cycles(edges), upward_edges(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} import edges")
    print(f"{len(found)} import cycles (strongly connected components):")
    for component in found:
        print("  ", " <-> ".join(component))
    print(f"{len(wrong)} imports against the layers:")
    for source, target in wrong:
        print(f"   {source} -> {target}")
    return 1 if found or wrong else 0


if __name__ == "__main__":
    sys.exit(_report())
