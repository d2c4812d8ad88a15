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
