"""Pacing frames from a source."""

import threading
import time

from fer_edge.vision.capture import Frame, paced


def test_paced_limits_rate_and_count():
    frames = (Frame(i, i / 100, None) for i in range(1000))
    started = time.monotonic()
    taken = list(paced(frames, fps_cap=20, max_frames=6, stop=threading.Event()))
    assert [f.index for f in taken] == list(range(6)) and time.monotonic() - started >= 5 / 20 * 0.9
