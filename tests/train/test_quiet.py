"""TensorFlow's chatter is dropped from stderr; errors pass, even when native code aborts."""

import os
import subprocess
import sys

ONEDNN = ("I0000 00:00:1796647807.347357    8035 port.cc:153] oneDNN custom operations are on. You may see slightly "
          "different numerical results due to floating-point round-off errors from different computation orders.")
ERROR = "E0000 00:00:1796647863.845013    9369 some_kernel.cc:42] a real error\n"

SCRIPT = f"""
import os, sys
from fer_train.quiet import filtered_stderr

with filtered_stderr():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, {ONEDNN!r}.encode() + b"\\n")
    os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\\n")
    os.write(2, {ERROR!r}.encode())
    print("a Python error line", file=sys.stderr)
    if sys.argv[1] == "abort":
        os.abort()
print("after", file=sys.stderr)
"""


def run(how, **env):
    return subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env))


def test_chatter_is_dropped_and_errors_pass_in_order():
    result = run("end")
    assert result.returncode == 0
    assert result.stderr == ERROR + "a Python error line\nafter\n", result.stderr


def test_an_abort_inside_still_shows_what_came_before():
    result = run("abort")
    assert result.returncode != 0
    assert ERROR in result.stderr and "a Python error line" in result.stderr
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr and "fully_quantize" not in result.stderr


def test_fer_edge_debug_shows_everything():
    result = run("end", FER_EDGE_DEBUG="1")
    assert "oneDNN custom operations" in result.stderr and "fully_quantize" in result.stderr
