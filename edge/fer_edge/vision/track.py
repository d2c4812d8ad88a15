"""A light IoU tracker: stable ids across frames and smoothed probabilities per face.

Greedy IoU matching is enough at kiosk scale (a few faces, 5-30 fps); the smoothing is an
exponential moving average of the probabilities, so a label changes only when the
expression does, not when one frame is noisy.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..core.labels import LABELS


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: tuple
    probs: np.ndarray
    first_seen: float
    last_seen: float
    hits: int = 1
    misses: int = 0
    detection: int = 0               # index of the detection it was matched to at the last analysis
    raw: Optional[np.ndarray] = field(default=None, repr=False)
    labels: Tuple[str, ...] = LABELS    # the model's labels, in its output order

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))


class Tracker:
    """Matches detections to tracks by IoU; forgets a track after `max_misses` frames unseen.

    `alpha` is the weight of the newest frame in the moving average (1.0: no smoothing).
    """

    def __init__(self, iou_threshold: float = 0.3, max_misses: int = 15, alpha: float = 0.3,
                 labels: Sequence[str] = LABELS):
        self.iou_threshold, self.max_misses, self.alpha = iou_threshold, max_misses, alpha
        self.labels = tuple(labels)
        self.tracks: List[Track] = []
        self.next_id = 1
        self.ended: List[Track] = []

    def forget(self) -> None:
        """End every track (the camera was lost: whoever is there afterwards is seen afresh)."""
        self.ended, self.tracks = self.tracks, []

    def coast(self) -> List[Track]:
        """A frame that was not analysed: the faces seen at the last analysis, where they were."""
        self.ended = []
        return sorted((t for t in self.tracks if t.misses == 0), key=lambda t: t.id)

    def update(self, boxes: Sequence[Sequence], probs: np.ndarray, timestamp: float,
               frames: int = 1) -> List[Track]:
        """boxes: list of (x, y, w, h, ...); probs: (N, labels). Returns the tracks seen this frame.
        `frames`: how many frames this analysis stands for (those coasted since the last one
        and this one): the average moves as far as that many frames of the same face would
        move it, and a face not found has been missing that many frames."""
        alpha = 1.0 - (1.0 - self.alpha) ** frames
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        used_tracks, used_boxes, seen = set(), set(), []
        for overlap, ti, bi in pairs:
            if overlap < self.iou_threshold:
                break
            if ti in used_tracks or bi in used_boxes:
                continue
            used_tracks.add(ti)
            used_boxes.add(bi)
            track = self.tracks[ti]
            track.box = tuple(float(v) for v in boxes[bi][:4])
            track.probs = (1 - alpha) * track.probs + alpha * probs[bi]
            track.raw = probs[bi]
            track.last_seen, track.hits, track.misses = timestamp, track.hits + 1, 0
            track.detection = bi
            seen.append(track)
        for bi, box in enumerate(boxes):
            if bi not in used_boxes:
                track = Track(self.next_id, tuple(float(v) for v in box[:4]), np.array(probs[bi], np.float64),
                              timestamp, timestamp, raw=probs[bi], detection=bi, labels=self.labels)
                self.next_id += 1
                self.tracks.append(track)
                seen.append(track)
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks and track not in seen:
                track.misses += frames
        self.ended = [t for t in self.tracks if t.misses > self.max_misses]
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        return sorted(seen, key=lambda t: t.id)
