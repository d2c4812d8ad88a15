"""Public functions carry type hints (mypy checks what they promise): the device package's,
and the training and conversion packages' public APIs."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (ROOT / "edge" / "fer_edge", ROOT / "train" / "fer_train", ROOT / "convert" / "fer_convert")


def public_functions(package):
    """(module, name, fully annotated) for every public function and public method."""
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        scopes = [(tree, None)] + [(node, node.name) for node in tree.body
                                   if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
        for scope, owner in scopes:
            for node in scope.body:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if node.name.startswith("_") and node.name != "__init__":
                    continue
                arguments = [a for a in node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
                annotated = all(a.annotation is not None for a in arguments) and (
                    node.returns is not None or node.name == "__init__")
                yield path.stem, f"{owner + '.' if owner else ''}{node.name}", annotated


def test_at_least_95_percent_of_the_device_packages_public_functions_are_annotated():
    functions = list(public_functions(PACKAGES[0]))
    bare = [f"{module}.{name}" for module, name, annotated in functions if not annotated]
    share = 1 - len(bare) / len(functions)
    print(f"{len(functions) - len(bare)} of {len(functions)} public functions annotated ({share:.0%})")
    assert share >= 0.95, bare


def test_training_and_conversion_public_functions_are_all_annotated():
    bare = [f"{package.name}.{module}.{name}" for package in PACKAGES[1:]
            for module, name, annotated in public_functions(package) if not annotated]
    assert not bare
