"""The one clock seam: media time maps to wall time, and a stepped wall clock is noticed once
without touching durations. Real clocks; the step is a real change of the wall clock's offset."""

import time

from fer_edge.core.clock import STEP_SECONDS, WallClock, start_of_today


def test_media_time_maps_to_wall_time_and_a_steady_clock_is_not_a_step():
    said = []
    clock = WallClock(base=1_700_000_000.0, say=said.append)
    assert clock.wall_of(0.0) == 1_700_000_000.0 and clock.wall_of(12.5) == 1_700_000_012.5
    time.sleep(0.05)
    assert clock.check() == 0.0 and clock.stepped == 0.0 and said == []


def test_a_step_moves_later_timestamps_and_is_said_once():
    said = []
    clock = WallClock(base=1000.0, say=said.append)
    clock.offset -= 3600.0           # as if NTP moved the wall clock an hour ahead since the start
    step = clock.check()
    assert abs(step - 3600.0) < 1.0 and abs(clock.wall_of(10.0) - (1000.0 + 3600.0 + 10.0)) < 1.0
    assert len(said) == 1 and "the wall clock stepped +3600 s" in said[0] and "durations are unaffected" in said[0]
    assert clock.check() == 0.0 and len(said) == 1   # noticed once
    clock.offset += STEP_SECONDS / 2                  # a drift under the threshold is no step
    assert clock.check() == 0.0 and abs(clock.stepped - 3600.0) < 1.0


def test_today_starts_at_the_last_local_midnight():
    for now in (time.time(), 1_700_000_000.0, 1_700_000_000.0 + 86_399):
        start = start_of_today(now)
        assert start <= now < start + 25 * 3600   # a day is 23 to 25 hours around a DST change
        assert time.localtime(start)[3:6] == (0, 0, 0)
        assert time.localtime(start)[:3] == time.localtime(now)[:3]
