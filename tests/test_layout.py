"""The layout of the package, read from its source: one-way imports, one
storage contract, modules of one job.

The import graph is built with ``ast`` from ``src/napari_diskimage``:
imports under ``if TYPE_CHECKING:`` are not counted (they never run),
imports inside functions are (they run when called, and a cycle through
them is still a tangle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_diskimage

PACKAGE = Path(napari_diskimage.__file__).parent
NAME = "napari_diskimage"

#: The core this layout test guards (issue 22, helper 22a): no cycles among
#: these, none over MAX_LINES lines.
CORE = (
    "napari_diskimage",
    "napari_diskimage._cache",
    "napari_diskimage._diskimage",
    "napari_diskimage._errors",
    "napari_diskimage._files",
    "napari_diskimage._geometry",
    "napari_diskimage._index",
    "napari_diskimage._labels",
    "napari_diskimage._meta",
    "napari_diskimage._open",
    "napari_diskimage._operations",
    "napari_diskimage._scratch",
    "napari_diskimage._sequence",
    "napari_diskimage._steps",
    "napari_diskimage._tiff",
    "napari_diskimage._tiff_meta",
)
CORE_PACKAGES = (
    "napari_diskimage.storage",
    "napari_diskimage.io",
    "napari_diskimage.display",
)
MAX_LINES = 520

#: Cycles outside the core allowed for now: none (the last one,
#: _cluster <-> process._engine, went with process._counters).
KNOWN_CYCLES: set[frozenset[str]] = set()

#: Modules allowed to name the mapped storage or its file offset.
CONTRACT_EXEMPT = ("napari_diskimage.storage",)
#: ``DiskLabelsLayer.file_offset`` is the labels layer's own window offset
#: (where its window starts in the plane), not a storage's byte offset.
LAYER_WINDOW = (
    "napari_diskimage._napari.labels",
    "napari_diskimage._napari.labels_layer",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([NAME, *parts])] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.AST) -> set[str]:
    """Modules of the package that ``module`` imports at run time."""
    package = (
        module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    )
    found: set[str] = set()

    def add(name: str) -> None:
        if name in MODULES and name != module:
            found.add(name)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                subs = [f"{target}.{alias.name}" for alias in child.names]
                if not all(sub in MODULES for sub in subs):
                    add(target)  # ``from . import mapped`` needs only the module
                for sub in subs:
                    add(sub)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: _imports(name, ast.parse(path.read_text(), str(path)))
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def _is_core(module: str) -> bool:
    return module in CORE or any(
        module == p or module.startswith(p + ".") for p in CORE_PACKAGES
    )


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_import_graph_is_read_from_the_source():
    graph = _graph()
    # a function-level import counts, a TYPE_CHECKING one does not
    assert "napari_diskimage.display" in graph["napari_diskimage._napari.in_place"]
    assert "napari_diskimage._meta" not in graph["napari_diskimage.storage._base"]
    assert "napari_diskimage._open" in graph["napari_diskimage._napari.reader"]
    assert all(_is_core(m) for m in CORE)


def test_no_import_cycles_in_the_core():
    cycles = _cycles(_graph())
    core = [sorted(c) for c in cycles if any(_is_core(m) for m in c)]
    assert core == [], f"import cycles through the core: {core}"
    others = [sorted(c) for c in cycles if c not in KNOWN_CYCLES and c not in core]
    assert others == [], f"new import cycles: {others}"


def test_storage_kinds_never_build_a_disk_image():
    graph = _graph()
    facade = {
        f"{NAME}.{m}"
        for m in ("_diskimage", "_tiff", "_sequence", "_io", "_raw", "_open")
    }
    for module, imported in graph.items():
        if _under(module, (f"{NAME}.storage",)):
            assert not imported & facade, f"{module} imports {imported & facade}"


def _names(tree: ast.AST) -> set[str]:
    """Identifiers, attribute names and string constants used in ``tree``."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.add(node.value)
    return out


def test_only_storage_knows_the_mapped_file():
    for module, path in MODULES.items():
        if _under(module, CONTRACT_EXEMPT):
            continue
        names = _names(ast.parse(path.read_text(), str(path)))
        assert "MappedStorage" not in names, f"{module} names MappedStorage"
        if module not in LAYER_WINDOW:
            assert "file_offset" not in names, f"{module} reads file_offset"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _is_core(m)))
def test_core_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
