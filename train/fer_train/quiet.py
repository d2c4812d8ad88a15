"""TensorFlow without its chatter on stderr, errors kept.

TensorFlow's native code logs through absl before anything can configure it: on import it
says that oneDNN is on (twice) and that logs go to stderr, and its converter prints a line
of its own; neither heeds TF_CPP_MIN_LOG_LEVEL. `filtered_stderr` passes the process's
stderr through a small filter process while such code runs, so the known chatter is dropped
and every other line (an error, a warning of ours) still reaches the user, even when the
native code aborts the process. FER_EDGE_DEBUG=1 shows everything.
"""

import contextlib
import os
import subprocess
import sys
from typing import Iterator

# absl's INFO and WARNING lines (`I0000 00:00:1796647807.347357    8035 port.cc:153] ...`),
# the banner before absl is set up, cpu_feature_guard's second line, and the int8
# calibrator's own print. Error (E) and fatal (F) lines pass.
CHATTER = (r"^[IW]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w.]+:\d+\] "
           r"|^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
           r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
           r"|^fully_quantize: \d+, inference_type: ")

# Ctrl-C reaches the terminal's whole process group: the filter ignores it and ends when its
# input does, so what the command says while it stops still gets through.
_FILTER = ("import re, signal, sys\n"
           "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
           "chatter = re.compile(sys.argv[1])\n"
           "for line in sys.stdin.buffer:\n"
           "    if not chatter.match(line.decode('utf-8', 'replace')):\n"
           "        sys.stderr.buffer.write(line)\n"
           "        sys.stderr.buffer.flush()\n")


def quiet_tensorflow() -> None:
    """Call before TensorFlow is imported: its C++ INFO and WARNING logs off (errors stay on)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Run the body with file descriptor 2 piped through the chatter filter."""
    if os.environ.get("FER_EDGE_DEBUG"):   # everything TensorFlow says, as it says it
        yield
        return
    sys.stderr.flush()
    try:
        filter_process = subprocess.Popen([sys.executable, "-c", _FILTER, CHATTER], stdin=subprocess.PIPE)
    except OSError:
        yield
        return
    assert filter_process.stdin is not None
    saved = os.dup(2)
    os.dup2(filter_process.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        filter_process.stdin.close()
        filter_process.wait()
