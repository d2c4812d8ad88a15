"""What fer-edge says, through the standard `logging` module: one line per message on stderr,
so that stdout carries data alone (`--json` lines, reports). In a terminal a line starts with
`fer-edge: `; under systemd it starts with its syslog priority (`<6>`, `<4>`), which the
journal turns into the entry's level. User errors stay the one line of `cli_guard.guarded`.
"""

import logging
import os
import sys
import time
import unicodedata
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TextIO, TypeVar

LOGGER = logging.getLogger("fer_edge")
Say = Callable[[str], None]   # how a component is told to speak: `say`, `warn`, or a test's list.append

# sd-daemon(3): the priority prefixes journald reads at the start of a line.
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def say(message: str) -> None:
    """Something the operator should know: a state change, progress, a summary."""
    LOGGER.info(message)


def warn(message: str) -> None:
    """Something is wrong, and fer-edge carries on around it."""
    LOGGER.warning(message)


T = TypeVar("T")


def progress(items: Sequence[T], label: str) -> Iterator[T]:
    """Long work shows that it moves, on stderr (stdout carries the data): a bar with the time
    left in a terminal, else a line at every tenth, which a log or the journal keeps."""
    if sys.stderr.isatty():
        started, width = time.monotonic(), 36
        for done, item in enumerate(items, start=1):
            yield item
            filled, left = width * done // len(items), (time.monotonic() - started) / done * (len(items) - done)
            sys.stderr.write(f"\r{label}  [{'#' * filled}{'-' * (width - filled)}]  {100 * done // len(items)}%  "
                             f"{left:.0f} s left ")
            sys.stderr.flush()
        sys.stderr.write("\n")
        return
    step = max(1, -(-len(items) // 10))
    for done, item in enumerate(items, start=1):
        yield item
        if done % step == 0 or done == len(items):
            say(f"{label}: {done} of {len(items)}")


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITIES.get(record.levelno, 6)}>{record.getMessage()}"


def writes_to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal's: systemd sets $JOURNAL_STREAM to its device:inode."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def setup(stream: Optional[TextIO] = None, environ: Optional[Mapping[str, str]] = None) -> None:
    """Send fer-edge's messages to stderr (or `stream`), in the journal's form under systemd. Once."""
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    journal = writes_to_journal(stream, environ)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter("fer-edge: %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def unprintable(char: str) -> bool:
    """A control or format character (escape sequences' first byte, text-direction overrides):
    given to a terminal raw, it can rewrite what the screen shows."""
    return unicodedata.category(char) in ("Cc", "Cf")


def escaped(text: Any) -> str:
    """Text a device or a record sent, as a terminal may show it: control and format characters
    written out (`\\x1b`, `\\u202e`), so a name or a reason cannot rewrite the screen."""
    return "".join((f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}") if unprintable(char) else char
                   for char in str(text))


class Budget:
    """How often a line may be said when others can make it come by the hundred: at most `most`
    at once, then one per `seconds` (a token bucket); `skipped` counts the ones not said."""

    def __init__(self, most: int, seconds: float, clock: Callable[[], float]):
        self.most, self.seconds, self.clock = most, seconds, clock
        self.tokens, self.at, self.skipped = float(most), clock(), 0

    def spend(self) -> bool:
        now = self.clock()
        self.tokens, self.at = min(float(self.most), self.tokens + (now - self.at) / self.seconds), now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.skipped += 1
        return False
