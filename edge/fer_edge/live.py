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
    def __init__(self, info=None):
        self.lock = threading.Lock()
        self.frame, self.tracks, self.seq = None, [], 0
        self.stats = None
        self.info = dict(info or {})
        self.started = time.time()
        self.viewers = 0

    def offer(self, image, tracks, stats):
        views = [TrackView(t.id, tuple(t.box), t.label, t.confidence, [float(p) for p in t.probs]) for t in tracks]
        with self.lock:
            self.frame, self.tracks, self.stats = image, views, stats
            self.seq += 1

    def snapshot(self):
        with self.lock:
            return self.seq, self.frame, list(self.tracks)

    def status(self):
        with self.lock:
            stats, tracks = self.stats, list(self.tracks)
        fps = stats.recent_fps() if stats else 0.0
        return dict(self.info, uptime=round(time.time() - self.started, 1), frames=stats.frames if stats else 0,
                    fps=round(fps, 2), faces=stats.faces if stats else 0, viewers=self.viewers,
                    tracks=[{"id": t.id, "label": t.label, "confidence": round(t.confidence, 4),
                             "box": [round(v, 1) for v in t.box]} for t in tracks])
