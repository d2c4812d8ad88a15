"""The one clock seam: durations and timeouts come from media time (a file's position or
the monotonic clock), timestamps from the wall clock. A Pi has no real-time clock and NTP
steps its clock after boot; a step is noticed here, said once, and moves later timestamps
without touching any duration."""

import time
from typing import Callable, Optional

STEP_SECONDS = 2.0   # a wall clock that moves this much against the monotonic one has been stepped


def start_of_today(now: Optional[float] = None) -> float:
    """Unix time of the last local midnight: what "today" means to the report, the page and
    the log's count of today's visits."""
    now = time.time() if now is None else now
    return time.mktime(time.localtime(now)[:3] + (0, 0, 0, 0, 0, -1))


class WallClock:
    """Maps media time to wall time: `base` + t, where `base` follows the wall clock's steps."""

    def __init__(self, base: float, say: Callable[[str], None] = lambda message: None):
        self.base = base
        self.say = say
        self.offset = time.time() - time.monotonic()
        self.stepped = 0.0   # the sum of every step noticed so far, in seconds

    def wall_of(self, t: float) -> float:
        return self.base + t

    def check(self) -> float:
        """Notice a step of the wall clock since the last check; returns it in seconds (0 if none)."""
        offset = time.time() - time.monotonic()
        step = offset - self.offset
        if abs(step) < STEP_SECONDS:
            return 0.0
        self.offset = offset
        self.base += step
        self.stepped += step
        self.say(f"the wall clock stepped {step:+.0f} s (NTP or an operator); durations are unaffected, "
                 "timestamps follow the new clock and visits across the step are marked")
        return step
