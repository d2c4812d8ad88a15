"""Visitor sessions from face tracks: who came, how long they stayed, how they felt as they left.

A session opens once a face has been seen steadily for `min_seconds`; it survives short
losses (a turned head, a passer-by in front): a track that ends and a new track that
starts near the same place within `gap_seconds` are the same visitor. It closes
`gap_seconds` after the face was last seen. The exit emotion is the mean of the smoothed
probabilities over the last `exit_seconds` the visitor was seen; the satisfaction score
maps that mean onto 0..100 through configurable valence weights.
"""

import os
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.clock import WallClock
from ..core.labels import LABELS
from ..core.records import LEFT, STOPPED, Visit, VisitInProgress, emotion_mix

# How a visit may end without the visitor leaving: its exit emotion is not scored.

# Valence of each emotion, -1 (unpleasant) .. +1 (pleasant); see docs/kiosk.md "Satisfaction score".
DEFAULT_VALENCE = {"angry": -1.0, "disgust": -1.0, "fear": -0.6, "happy": 1.0, "sad": -0.7,
                   "surprise": 0.3, "neutral": 0.0}


def valences(labels: Sequence[str], overrides: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Each label's valence: the override, else the built-in one, else 0 (a label of a model's
    own that no one has weighed counts as neither pleasant nor unpleasant)."""
    weights = dict(DEFAULT_VALENCE, **(overrides or {}))
    return {label: float(weights.get(label, 0.0)) for label in labels}


def unweighed(labels: Sequence[str], overrides: Optional[Dict[str, float]] = None) -> List[str]:
    """The labels whose valence is 0 only because nothing gives them one."""
    return [label for label in labels if label not in DEFAULT_VALENCE and label not in (overrides or {})]


def valence_note(path: str, overrides: Optional[Dict[str, float]]) -> str:
    """`config show`'s comment lines: the model's labels and the satisfaction weight each one
    gets, and the labels no weight was given."""
    from ..model.metadata import ModelError, read_model_metadata

    try:
        labels = read_model_metadata(path)["labels"]
    except ModelError as exc:
        return f"\n# valence per label: unknown (cannot read the model: {str(exc).splitlines()[0]})"
    weights = ", ".join(f"{label} {weight:g}" for label, weight in valences(labels, overrides).items())
    lines = [f"\n# {os.path.basename(path)} labels and their valence: {weights}"]
    missing = unweighed(labels, overrides)
    if missing:
        lines.append(f"# {', '.join(missing)}: no valence given, counted as 0; set them in [sessions.valence]")
    return "\n".join(lines)


def satisfaction(probs: np.ndarray, valence: Dict[str, float] = DEFAULT_VALENCE,
                 labels: Sequence[str] = LABELS) -> float:
    """0..100: 50 + 50 x the valence-weighted mean of the probabilities."""
    weights = np.array([valence.get(label, 0.0) for label in labels])
    return float(np.clip(50.0 + 50.0 * float(np.dot(weights, probs)), 0.0, 100.0))


@dataclass
class Session:
    """What a summary needs, and no more: a face that stays for hours (or a poster that
    looks like one) must not grow the service's memory. Per-frame labels are counted as
    they come; only the last `exit_seconds` of probabilities are kept."""

    id: str
    started: float
    last_seen: float
    box: Sequence[float]
    exit_seconds: float
    labels: Tuple[str, ...] = LABELS
    tracks: set = field(default_factory=set)
    frames: int = 0
    label_counts: np.ndarray = field(init=False)
    recent: deque = field(default_factory=deque)  # (t, probs) within exit_seconds of last_seen
    confirmed: bool = False
    clock_at_start: float = 0.0   # the wall clock's steps so far when the visit began

    def __post_init__(self) -> None:
        self.label_counts = np.zeros(len(self.labels), np.int64)

    def add(self, t: float, probs: np.ndarray, box: Sequence[float], track_id: int) -> None:
        probs = np.asarray(probs, np.float64)
        self.frames += 1
        self.label_counts[int(probs.argmax())] += 1
        self.recent.append((t, probs))
        while self.recent[0][0] < t - self.exit_seconds:
            self.recent.popleft()
        self.last_seen, self.box = t, box
        self.tracks.add(track_id)

    def summary(self, valence: Dict[str, float], device_id: str, clock: WallClock, ended_by: str = LEFT) -> Visit:
        shares = self.label_counts / self.frames
        exit_probs = np.stack([p for _, p in self.recent]).mean(axis=0)
        return Visit(id=self.id, device=device_id, start=round(clock.wall_of(self.started), 3),
                     end=round(clock.wall_of(self.last_seen), 3), duration=round(self.last_seen - self.started, 2),
                     frames=self.frames, shares=emotion_mix(shares, self.labels),
                     dominant=self.labels[int(shares.argmax())], exit_emotion=self.labels[int(exit_probs.argmax())],
                     exit_probs=emotion_mix(exit_probs, self.labels),
                     satisfaction=round(satisfaction(exit_probs, valence, self.labels), 1), tracks=sorted(self.tracks),
                     ended_by=ended_by, clock_step=round(clock.stepped - self.clock_at_start, 1))


def _near(a: Sequence[float], b: Sequence[float]) -> bool:
    """Centres closer than the larger box side: the same visitor's face, moved a little."""
    ax, ay = a[0] + a[2] / 2, a[1] + a[3] / 2
    bx, by = b[0] + b[2] / 2, b[1] + b[3] / 2
    return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 < max(a[2], a[3], b[2], b[3])


class SessionTracker:
    """Feed it every frame's tracks with `update`; it returns the sessions that finished."""

    def __init__(self, min_seconds: float = 1.0, gap_seconds: float = 3.0, exit_seconds: float = 3.0,
                 valence: Optional[Dict[str, float]] = None, device_id: str = "fer-edge",
                 clock: Optional[WallClock] = None, labels: Sequence[str] = LABELS):
        self.min_seconds, self.gap_seconds, self.exit_seconds = min_seconds, gap_seconds, exit_seconds
        self.labels = tuple(labels)
        self.valence_given = valence
        self.valence = valences(self.labels, valence)
        self.device_id = device_id
        self.clock = clock or WallClock(0.0)
        self.by_track: Dict[int, "Session"] = {}   # track id -> Session
        self.open: List["Session"] = []            # sessions not yet finished

    def update(self, t: float, tracks: Sequence) -> List[Visit]:
        """tracks: objects with id, box, probs (this frame's). Returns the finished visits.
        Visits whose face was last seen longer than the gap ago end first, at their last
        sighting: after a camera stall the same face starts a new visit."""
        finished = self._finish(lambda s: t - s.last_seen > self.gap_seconds)
        for track in tracks:
            session = self.by_track.get(track.id)
            if session is None:
                session = (self._continuing(t, track.box)
                           or Session(uuid.uuid4().hex, t, t, track.box, self.exit_seconds,
                                      labels=self.labels, clock_at_start=self.clock.stepped))
                if session not in self.open:
                    self.open.append(session)
                self.by_track[track.id] = session
            session.add(t, track.probs, track.box, track.id)
            if not session.confirmed and session.last_seen - session.started >= self.min_seconds:
                session.confirmed = True
        return finished

    def relabel(self, labels: Sequence[str]) -> None:
        """Another model's labels from now on (its visits start afresh: `flush` the open ones first)."""
        self.labels = tuple(labels)
        self.valence = valences(self.labels, self.valence_given)

    def in_progress(self, t: float) -> List[VisitInProgress]:
        """The visits going on now (seen within the gap, longer than min_seconds)."""
        return [VisitInProgress(round(self.clock.wall_of(s.started), 3), round(t - s.started, 1),
                                self.labels[int(s.recent[-1][1].argmax())])
                for s in self.open if s.confirmed and t - s.last_seen <= self.gap_seconds]

    def _continuing(self, t: float, box: Sequence[float]) -> Optional[Session]:
        """An open session whose face was lost nearby within the gap: a turned head, not a new visitor."""
        candidates = [s for s in self.open if t - s.last_seen <= self.gap_seconds and _near(s.box, box)
                      and s.last_seen < t]
        return max(candidates, key=lambda s: s.last_seen, default=None)

    def _finish(self, done: Callable[[Session], bool], ended_by: str = LEFT) -> List[Visit]:
        finished = []
        for session in [s for s in self.open if done(s)]:
            self.open.remove(session)
            for track_id in session.tracks:
                self.by_track.pop(track_id, None)
            if session.confirmed:  # a glimpse shorter than min_seconds is not a visit
                finished.append(session.summary(self.valence, self.device_id, self.clock, ended_by))
        return finished

    def flush(self, ended_by: str = STOPPED) -> List[Visit]:
        """Finish every open session. `ended_by` says why: "stopped" (a signal: the visitor
        may still be there), "source ended" (a file's last frame) or "camera lost" (no frame
        for longer than the gap)."""
        return self._finish(lambda s: True, ended_by)
