"""The command line starts light: `import fer_edge.cli` and `fer-edge --help` load neither
OpenCV nor numpy nor the modules of the commands, and the ground floor (`core`) depends on no
command-line framework."""

import json
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "edge" / "fer_edge" / "core"
# What the command line may load before a command runs: the table of settings and what it reads.
LIGHT = {"fer_edge", "fer_edge.cli", "fer_edge.cli_deploy", "fer_edge.cli_guard", "fer_edge.settings", "fer_edge.vision", "fer_edge.vision.detect",
         "fer_edge.vision.running_mode", "fer_edge.setting_kinds"}


def loaded_after(code):
    """The modules loaded by `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def heavy(modules):
    ours = {m for m in modules if m.startswith("fer_edge") and m not in LIGHT and not m.startswith("fer_edge.core")}
    return sorted(ours | (modules & {"cv2", "numpy", "ai_edge_litert", "paho", "psycopg"}))


def test_importing_the_command_line_loads_no_command():
    assert heavy(loaded_after("import fer_edge.cli")) == []


def test_help_loads_no_command():
    code = ("import fer_edge.cli\ntry:\n    fer_edge.cli.main(['--help'])\nexcept SystemExit as end:\n"
            "    assert end.code == 0, end.code")
    assert heavy(loaded_after(code)) == []


def test_the_ground_floor_imports_no_click():
    modules = " ".join(f"fer_edge.core.{path.stem}" for path in CORE.glob("*.py") if path.stem != "__init__")
    assert "click" not in loaded_after(f"import importlib\nfor m in '{modules}'.split(): importlib.import_module(m)")
    assert not [path.name for path in CORE.glob("*.py") if "import click" in path.read_text()]
