"""The records that cross the device's modules: a face's update, who is in view, a visit.

Each is frozen and has one JSON form (what `--json`, MQTT and the page carry); the log's
rows are made from them too. A new field is added here, and every output follows.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .labels import LABELS

# Why a visit ended. Only "left" is a visitor leaving; the others cut a visit short, so its
# exit emotion is the moment of the cut and it is left out of the mean satisfaction.
LEFT = "left"
STOPPED = "stopped"
SOURCE_ENDED = "source ended"
CAMERA_LOST = "camera lost"
MODEL_CHANGED = "model changed"   # a deployed model with other labels took over mid-visit
CUT_ENDINGS = (STOPPED, CAMERA_LOST, MODEL_CHANGED)

MAX_DEVICE = 128   # characters of a device id: the collector stores no longer one, and the settings refuse it


def emotion_mix(probs: Iterable[float], labels: Sequence[str] = LABELS) -> Dict[str, float]:
    """{label: probability} rounded for output, in the model's label order."""
    return {label: round(float(p), 4) for label, p in zip(labels, probs)}


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @classmethod
    def of(cls, box: Sequence[float]) -> "Box":
        x, y, w, h = (round(float(v), 1) for v in box[:4])
        return cls(x, y, w, h)


@dataclass(frozen=True)
class TrackUpdate:
    """One tracked face on one frame: what may leave the device (no pixels). `analysed` says
    whether the frame was looked at, or the face carried over from the last look."""

    ts: float
    device: str
    frame: int
    track: int
    label: str
    confidence: float
    probs: Dict[str, float]
    box: Box
    analysed: bool = True

    @classmethod
    def of(cls, track: Any, device: str, frame: int, ts: float, analysed: bool = True) -> "TrackUpdate":
        """From a tracker's track (id, box, label, confidence, probs)."""
        return cls(round(ts, 3), device, frame, track.id, track.label, round(track.confidence, 4),
                   emotion_mix(track.probs, track.labels), Box.of(track.box), analysed)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VisitInProgress:
    started: float    # wall time it began
    seconds: float    # how long it has lasted
    label: str        # the visitor's latest emotion


@dataclass(frozen=True)
class View:
    """Who is in view: how many faces, the main one's emotion (the largest face: the visitor
    nearest the kiosk) and the visits in progress. A sensor reading this follows one face
    instead of alternating between faces."""

    ts: float
    device: str
    people: int
    label: Optional[str]
    confidence: Optional[float]
    probs: Dict[str, float]
    track: Optional[int]
    visits: List[VisitInProgress] = field(default_factory=list)

    @classmethod
    def of(cls, tracks: Sequence[Any], visits: List[VisitInProgress], device: str, ts: float) -> "View":
        main = max(tracks, key=lambda t: t.box[2] * t.box[3], default=None)
        if main is None:
            return cls(round(ts, 3), device, 0, None, None, {}, None, visits)
        return cls(round(ts, 3), device, len(tracks), main.label, round(main.confidence, 4),
                   emotion_mix(main.probs, main.labels), main.id, visits)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Visit:
    """A finished visit: when, how long, how the visitor looked (`shares` of frames per
    emotion, the `dominant` one) and left (`exit_emotion`, `exit_probs`, `satisfaction`
    0-100), and why it ended. `clock_step`: seconds the wall clock was stepped meanwhile."""

    id: str
    device: str
    start: float
    end: float
    duration: float
    frames: int
    shares: Dict[str, float]
    dominant: str
    exit_emotion: str
    exit_probs: Dict[str, float]
    satisfaction: float
    tracks: List[int] = field(default_factory=list)
    ended_by: str = LEFT
    clock_step: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Visit":
        """From its JSON form (extra keys ignored); a KeyError names a field it lacks."""
        optional = {"tracks": [], "ended_by": LEFT, "clock_step": 0.0}
        return cls(**{name: data[name] if name not in optional else data.get(name, optional[name])
                      for name in cls.__dataclass_fields__})

    def row(self) -> Dict[str, Any]:
        """The visit as a row of the sessions table: its mixes as JSON text, no track list."""
        row = self.to_json()
        del row["tracks"]
        row["shares"], row["exit_probs"] = json.dumps(self.shares), json.dumps(self.exit_probs)
        return row


@dataclass(frozen=True)
class RunStats:
    """The periodic stats message: throughput, stage latencies (ms, medians of the last 100),
    counts, uptime, and what each sink says of itself (`health`: log, broker, backlog)."""

    device: str
    ts: float
    uptime: float
    frames: int
    fps: float
    faces: int
    tracks: int
    detect_ms: Optional[float]
    classify_ms: Optional[float]
    sessions: int
    camera_lost: int
    health: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """One flat object: the health fields beside the counts."""
        data = asdict(self)
        data.update(data.pop("health"))
        return data
