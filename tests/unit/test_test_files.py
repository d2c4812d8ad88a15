"""Tests mirror the code: every module of the device package has a test file of its name
(vision/track.py -> tests/.../test_track.py), so the next engineer finds a module's tests
where they look first."""

from conftest import ROOT

PACKAGE = ROOT / "edge" / "fer_edge"


def test_every_device_module_has_a_test_file_of_its_name():
    test_files = {path.name for path in (ROOT / "tests").rglob("test_*.py")}
    modules = sorted(path.relative_to(PACKAGE) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    assert modules, f"no modules found under {PACKAGE}"
    missing = [str(module) for module in modules if f"test_{module.stem}.py" not in test_files]
    assert not missing, f"device modules without a test file of their name under tests/: {', '.join(missing)}"


def test_no_two_test_files_share_a_name():
    """pytest imports test files by their name alone: a second file of one name stops the suite."""
    seen: dict = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, f"test files of the same name: {shared}"
