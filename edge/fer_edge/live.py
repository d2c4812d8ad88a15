"""What the camera loop shares with the web page: the newest frame and its tracks.

The camera loop only stores references (no copy, no drawing, no JPEG encoding: those happen
in the web server's thread, and only while someone watches), so a viewer never slows it.
"""

import threading
import time
from dataclasses import dataclass


@dataclass
class TrackView:
    id: int
    box: tuple
    label: str
    confidence: float
    probs: list


class LiveState:
    """A frame hook of the camera loop, read by the web server's thread."""

    HEALTH_SECONDS = 2.0

    def __init__(self, info=None, health=None):
        self.lock = threading.Lock()
        self.frame, self.tracks, self.seq = None, [], 0
        self.stats = None
        self.info = dict(info or {})
        self.started = time.time()
        self.viewers = 0
        self.health_of, self.health, self.health_at = health, {}, 0.0
        self.state = "starting"

    def on_frame(self, frame, tracks, stats):
        views = [TrackView(t.id, tuple(t.box), t.label, t.confidence, [float(p) for p in t.probs]) for t in tracks]
        health = None
        if self.health_of and time.monotonic() - self.health_at >= self.HEALTH_SECONDS:
            health, self.health_at = self.health_of(), time.monotonic()  # in the camera thread, which owns the sinks
        with self.lock:
            self.frame, self.tracks, self.stats = frame.image, views, stats
            self.state = "running"
            self.seq += 1
            if health is not None:
                self.health = health

    def stopping(self):
        """The service is stopping: the page says so instead of a frozen picture."""
        with self.lock:
            self.state = "stopping"

    def close(self):
        pass

    def snapshot(self):
        with self.lock:
            return self.seq, self.frame, list(self.tracks)

    def status(self):
        with self.lock:
            stats, tracks, state = self.stats, list(self.tracks), self.state
        fps = stats.recent_fps() if stats else 0.0
        view = (stats.view if stats else None) or {}
        last_frame = round(time.monotonic() - stats.last_frame_at, 1) if stats and stats.last_frame_at else None
        return dict(self.info, **self.health, state=state, uptime=round(time.time() - self.started, 1),
                    frames=stats.frames if stats else 0, fps=round(fps, 2), faces=stats.faces if stats else 0,
                    viewers=self.viewers, last_frame_seconds=last_frame, people=view.get("people", 0),
                    visits=view.get("visits", []),
                    tracks=[{"id": t.id, "label": t.label, "confidence": round(t.confidence, 4),
                             "box": [round(v, 1) for v in t.box]} for t in tracks])
