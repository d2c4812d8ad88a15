"""One policy for every command line: a user-facing error is one line and exit status 1,
never a traceback.

`UserError` (and its subclasses in each module) is a problem the user can fix: a bad
file, flag or value; it is shown as its message alone. A file the system refuses
(OSError) is shown the same way. Anything else is a bug in fer-edge: it is shown with
its type and the hint to rerun with FER_EDGE_DEBUG=1, which shows the traceback.
A reader of stdout that went away (`fer-edge config show | head -1`) is no error: the
command ends quietly with 141 (128 + SIGPIPE), as `yes | head` does.
The command-line framework's side of this policy lives with the command lines
(`fer_edge.cli_guard`), so this floor depends on no framework.
"""

import os
import select
import sys


class UserError(ValueError):
    """Something the user can fix; its message is the whole story."""


DEBUG_HINT = "set FER_EDGE_DEBUG=1 to see where"
PIPE_CLOSED = 141   # the status of a process that SIGPIPE ended; Python ignores SIGPIPE, so it is said
_stdout = {"closed": False}


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll says POLLERR), rather than
    another broken pipe (a socket) that happened to be raised."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def close_stdout() -> None:
    """Send what is still written to stdout (and the exit's flush) nowhere; the command ends
    with PIPE_CLOSED once it has finished what it was doing."""
    _stdout["closed"] = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def one_line(exc: BaseException) -> str:
    """The message a user sees for `exc`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (UserError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text or 'no message'} (an error in fer-edge; {DEBUG_HINT})"


def stdout_closed() -> bool:
    """Whether `close_stdout` sent stdout nowhere (the command then ends with PIPE_CLOSED)."""
    return _stdout["closed"]
