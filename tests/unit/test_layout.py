"""Each folder of fer_edge, fer_train and fer_convert says in its `__init__` what it may import,
and this test holds every module to it (Home Assistant's manifests and hassfest, for us).

`MAY_IMPORT`: the folders (or single modules) of the three packages a folder's modules may
import; a module may always import from its own folder. `NEVER_IMPORT`: third-party packages
a folder's modules never import, which holds for the folders below it too. The declarations
are read with `ast`, so nothing heavy is imported to check them.
"""

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"fer_edge": ROOT / "edge" / "fer_edge", "fer_train": ROOT / "train" / "fer_train",
            "fer_convert": ROOT / "convert" / "fer_convert"}
MAX_MODULES = 12
MAX_DEVICE_LINES = 450


def folders() -> List[str]:
    """Every folder (a package with an __init__) of the three packages, as a dotted name."""
    found = []
    for package, root in PACKAGES.items():
        for init in sorted(root.rglob("__init__.py")):
            found.append(".".join([package, *init.parent.relative_to(root).parts]))
    return found


def path_of(dotted: str) -> Path:
    package, *rest = dotted.split(".")
    return PACKAGES[package].joinpath(*rest)


def is_folder(dotted: str) -> bool:
    return dotted.split(".")[0] in PACKAGES and (path_of(dotted) / "__init__.py").exists()


def modules() -> Iterator[Tuple[str, str, Path]]:
    """(dotted module name, its folder, path) of every module, __init__ files included."""
    for folder in folders():
        for path in sorted(path_of(folder).glob("*.py")):
            yield (folder if path.stem == "__init__" else f"{folder}.{path.stem}"), folder, path


def declared(folder: str) -> Dict[str, Tuple[str, ...]]:
    """A folder's MAY_IMPORT and NEVER_IMPORT, read from its __init__ without importing it."""
    found: Dict[str, Tuple[str, ...]] = {}
    for node in ast.parse((path_of(folder) / "__init__.py").read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id in ("MAY_IMPORT", "NEVER_IMPORT") and node.value is not None:
            found[target.id] = tuple(ast.literal_eval(node.value))
    return found


def never_imported(folder: str) -> Set[str]:
    """NEVER_IMPORT of the folder and of every folder above it."""
    parts = folder.split(".")
    return {name for i in range(1, len(parts) + 1) for name in declared(".".join(parts[:i])).get("NEVER_IMPORT", ())}


def imports(folder: str, path: Path, top_level_only: bool = False) -> Iterator[str]:
    """Dotted names a module imports (relative imports resolved), anywhere in it or only at
    module level: `from a.b import c` gives a.b.c when that is a module of ours, else a.b."""
    tree = ast.parse(path.read_text())
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = folder.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                child = f"{base}.{alias.name}"
                ours = child.split(".")[0] in PACKAGES
                yield child if ours and (is_folder(child) or path_of(child).with_suffix(".py").exists()) else base


def folder_of(dotted: str) -> str:
    return dotted if is_folder(dotted) else dotted.rsplit(".", 1)[0]


def allowed(folder: str, target: str) -> bool:
    """Whether a module of `folder` may import `target`: a module or folder of its own folder
    or of its list, or a package above it (loaded already to reach the module)."""
    may = declared(folder).get("MAY_IMPORT", ())
    above = is_folder(target) and folder.startswith(target + ".")
    return above or folder_of(target) in (folder, *may) or target in may


def test_every_folder_declares_what_it_may_import():
    missing = [folder for folder in folders() if "MAY_IMPORT" not in declared(folder)]
    assert not missing, f"no MAY_IMPORT in the __init__ of {', '.join(missing)}"
    undocumented = [folder for folder in folders() if not ast.get_docstring(ast.parse((path_of(folder) / "__init__.py").read_text()))]
    assert not undocumented, f"no docstring (what the folder owns) in the __init__ of {', '.join(undocumented)}"


def test_the_declarations_name_what_exists():
    unknown = [f"{folder}: {name}" for folder in folders() for name in declared(folder).get("MAY_IMPORT", ())
               if not (is_folder(name) or (name.split(".")[0] in PACKAGES and path_of(name).with_suffix(".py").exists()))]
    assert not unknown, unknown


def test_every_module_imports_only_what_its_folder_allows():
    broken = []
    for name, folder, path in modules():
        forbidden = never_imported(folder)
        for target in sorted(set(imports(folder, path))):
            head = target.split(".")[0]
            if head in PACKAGES and not allowed(folder, target):
                broken.append(f"{name} -> {target} (not in {folder}'s MAY_IMPORT)")
            elif head in forbidden:
                broken.append(f"{name} -> {target} ({folder} never imports {head})")
    assert not broken, "\n".join(broken)


def test_the_device_never_imports_training_conversion_or_tensorflow():
    for folder in folders():
        if folder.startswith("fer_edge"):
            may = declared(folder).get("MAY_IMPORT", ())
            assert not [m for m in may if m.split(".")[0] != "fer_edge"], folder
            assert {"tensorflow", "keras"} <= never_imported(folder), folder


def test_the_boundaries_the_device_keeps():
    """What the folders' lists say, said once more where a change to a list would be easy to
    miss: writers, readers, the camera loop and the model stay apart."""
    never = {"fer_edge.kiosk": ("fer_edge.outputs",), "fer_edge.outputs": ("fer_edge.kiosk", "fer_edge.vision"),
             "fer_edge.fleet": ("fer_edge.kiosk", "fer_edge.vision"), "fer_edge.vision": ("fer_edge.kiosk",),
             "fer_edge.model": ("fer_edge.vision",), "fer_train": ("fer_convert",)}
    for folder in folders():
        for above, banned in never.items():
            if folder == above or folder.startswith(above + "."):
                crossed = [m for m in declared(folder).get("MAY_IMPORT", ()) if any(m == b or m.startswith(b + ".") for b in banned)]
                assert not crossed, f"{folder} may import {crossed}"
    assert "click" in never_imported("fer_edge.core")


def test_no_folder_holds_more_than_12_modules():
    crowded = {folder: n for folder in folders()
               if (n := len([p for p in path_of(folder).glob("*.py") if p.name != "__init__.py"])) > MAX_MODULES}
    assert not crowded, crowded


def test_no_device_file_is_over_450_lines():
    long = {str(path.relative_to(ROOT)): n for path in PACKAGES["fer_edge"].rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_DEVICE_LINES}
    assert not long, long


def test_the_folders_allowed_imports_form_no_cycle():
    """With every import inside its folder's list, a loop between folders (or packages) is
    impossible only if the lists themselves hold none."""
    graph = {folder: {folder_of(m) for m in declared(folder).get("MAY_IMPORT", ())} - {folder} for folder in folders()}
    _assert_acyclic(graph)


def test_no_import_cycle_between_modules():
    graph = {name: {t for t in imports(folder, path, top_level_only=True) if t.split(".")[0] in PACKAGES} - {name}
             for name, folder, path in modules()}
    _assert_acyclic(graph)


def _assert_acyclic(graph: Dict[str, Set[str]]) -> None:
    done: Set[str] = set()
    active: List[str] = []

    def visit(node: str) -> None:
        if node in active:
            raise AssertionError("import cycle: " + " -> ".join(active[active.index(node):] + [node]))
        if node in done or node not in graph:
            return
        active.append(node)
        for target in sorted(graph[node]):
            visit(target)
        active.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
