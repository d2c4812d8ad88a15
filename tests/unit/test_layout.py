"""fer_edge's folders read as the data flow, and imports point one way: down."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edge" / "fer_edge"
# Lowest first: a module may import from its own folder and the folders before it.
LAYERS = ("core", "model", "vision", "kiosk", "outputs", "fleet", "web", "tools", "")


def modules():
    """(dotted name inside fer_edge, folder, path) of every module."""
    for path in sorted(PACKAGE.rglob("*.py")):
        folder = path.parent.relative_to(PACKAGE).as_posix()
        folder = "" if folder == "." else folder
        name = ".".join(filter(None, [folder.replace("/", "."), path.stem]))
        yield name, folder, path


def imported(folder, path, top_level_only=False):
    """fer_edge modules that `path` imports (relative imports, resolved), anywhere in it or
    only at module level."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = folder.split("/") if folder else []
            base = parts[: len(parts) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                yield target
            else:
                yield from (".".join(base + [alias.name]) for alias in node.names)


def layer_of(name):
    head = name.split(".")[0]
    return head if head in LAYERS else ""


def test_no_folder_holds_more_than_12_modules():
    for folder in [PACKAGE, *[p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 12, f"{folder.name}: {count} modules"


def test_imports_point_down():
    upward = []
    for name, folder, path in modules():
        mine = LAYERS.index(layer_of(name))
        for target in imported(folder, path):
            if LAYERS.index(layer_of(target)) > mine:
                upward.append(f"{name} -> {target}")
    assert not upward


def test_no_import_cycle():
    graph = {name: set(imported(folder, path, top_level_only=True)) for name, folder, path in modules()}
    done, active = set(), []

    def visit(node):
        if node in active:
            raise AssertionError("import cycle: " + " -> ".join(active[active.index(node):] + [node]))
        if node in done or node not in graph:
            return
        active.append(node)
        for target in graph[node]:
            visit(target)
        active.pop()
        done.add(node)

    for node in graph:
        visit(node)
