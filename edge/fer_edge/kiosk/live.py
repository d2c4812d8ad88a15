"""What the camera loop shares with the web page: the newest frame and its tracks.

The camera loop only stores references (no copy, no drawing, no JPEG encoding: those happen
in the web server's thread, and only while someone watches), so a viewer never slows it.
"""

import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

if TYPE_CHECKING:  # for the hints only: a frame hook needs none of these at run time
    import numpy as np

    from ..vision.capture import Frame
    from .pipeline import Stats
    from ..vision.track import Track


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
    STALE_SECONDS = 10.0      # no frame for this long: the camera is not healthy
    STARTUP_SECONDS = 60.0    # time for a camera to deliver its first frame

    def __init__(self, info: Optional[dict] = None, health: Optional[Callable[[], dict]] = None,
                 alive: Optional[Callable[[], bool]] = None):
        self.lock = threading.Lock()
        self.frame: Optional["np.ndarray"] = None
        self.tracks: List[TrackView] = []
        self.seq = 0
        self.stats: Optional["Stats"] = None
        self.info = dict(info or {})
        self.started = time.time()
        self.viewers = 0
        self.health_of, self.health_at = health, 0.0
        self.health: dict = {}
        self.alive_of = alive
        self.started_monotonic = time.monotonic()
        self.state = "starting"

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: "Stats") -> None:
        views = [TrackView(t.id, tuple(t.box), t.label, t.confidence, [float(p) for p in t.probs]) for t in tracks]
        health = None
        if self.health_of and time.monotonic() - self.health_at >= self.HEALTH_SECONDS:
            health, self.health_at = self.health_of(), time.monotonic()  # in the camera thread, which owns the sinks
        image = frame.image if self.viewers else None  # decoded only while someone watches
        with self.lock:
            self.frame, self.tracks, self.stats = image, views, stats
            self.state = "running"
            self.seq += 1
            if health is not None:
                self.health = health

    def model_changed(self, name: str, labels: Sequence[str]) -> None:
        """A deployed model runs from now on: the page names it."""
        with self.lock:
            self.info = dict(self.info, model=name, labels=list(labels))

    def stopping(self) -> None:
        """The service is stopping: the page says so instead of a frozen picture."""
        with self.lock:
            self.state = "stopping"

    def close(self) -> None:
        pass

    def problems(self) -> List[str]:
        """What is wrong with any worker now: the camera loop, the log, the MQTT sender."""
        with self.lock:
            stats, state, health = self.stats, self.state, dict(self.health)
        now, problems = time.monotonic(), []
        if state == "running" and stats and stats.last_frame_at and now - stats.last_frame_at > self.STALE_SECONDS:
            problems.append(f"no frame for {now - stats.last_frame_at:.0f} s")
        if state == "starting" and now - self.started_monotonic > self.STARTUP_SECONDS:
            problems.append("no frame yet")
        if health.get("log", "ok") != "ok":
            problems.append(f"log {health['log']}")
        if health.get("sender", "ok") != "ok":
            problems.append(f"MQTT sender: {health['sender']}")
        if self.alive_of is not None and not self.alive_of():
            problems.append("a worker thread has stopped")
        return problems

    def snapshot(self) -> tuple:
        with self.lock:
            return self.seq, self.frame, list(self.tracks)

    def status(self) -> dict:
        with self.lock:
            stats, tracks, state, info = self.stats, list(self.tracks), self.state, self.info
        fps = stats.recent_fps() if stats else 0.0
        view = stats.view if stats else None
        last_frame = round(time.monotonic() - stats.last_frame_at, 1) if stats and stats.last_frame_at else None
        return dict(info, **self.health, state=state, uptime=round(time.time() - self.started, 1),
                    frames=stats.frames if stats else 0, fps=round(fps, 2), faces=stats.faces if stats else 0,
                    viewers=self.viewers, last_frame_seconds=last_frame, people=view.people if view else 0,
                    visits=[asdict(v) for v in view.visits] if view else [],
                    tracks=[{"id": t.id, "label": t.label, "confidence": round(t.confidence, 4),
                             "box": [round(v, 1) for v in t.box]} for t in tracks])
