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


CTRL_C = """
import os, sys, time
from fer_train.quiet import filtered_stderr

with filtered_stderr():
    try:
        os.write(2, b"ready\\n")
        time.sleep(60)
    except KeyboardInterrupt:
        os.write(2, b"stopped, the run kept\\n")   # what a command says on Ctrl-C still passes the filter
        sys.exit(130)
"""


def test_ctrl_c_reaches_the_command_and_its_last_words_still_pass():
    """Ctrl-C goes to the terminal's whole process group, the filter included: the filter
    must outlive the command's own handling of it, not die with a traceback of its own."""
    import signal

    process = subprocess.Popen([sys.executable, "-c", CTRL_C], stderr=subprocess.PIPE, text=True,
                               start_new_session=True)   # a group of its own, as a terminal's foreground job
    assert process.stderr.readline() == "ready\n"
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    assert rest == "stopped, the run kept\n", rest
