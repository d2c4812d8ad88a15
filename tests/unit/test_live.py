"""The live state the page reads."""

import time

import numpy as np

from fer_edge.vision.capture import Frame


def test_the_live_status_says_a_stalled_camera_and_a_stop():
    from fer_edge.kiosk.live import LiveState
    from fer_edge.kiosk.pipeline import Stats

    live = LiveState({"camera": True})
    assert live.status()["state"] == "starting" and live.status()["last_frame_seconds"] is None
    stats = Stats(frames=1, last_frame_at=time.monotonic() - 12.0)
    live.on_frame(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8)), [], stats)
    status = live.status()
    assert status["state"] == "running" and 11.5 < status["last_frame_seconds"] < 13.0
    live.stopping()
    assert live.status()["state"] == "stopping"
