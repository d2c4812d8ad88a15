"""A device's own figures, and the health gate that judges a new model by them.

`Health` is a frame hook of the camera loop: it keeps a rolling window (time- and
size-bounded) of what each frame gave (faces, and per face its label and top probability)
and of the classifier's errors, so the deploy agent can compare the same device, same
camera, same scene, before and after a swap. Nothing here keeps pixels beyond a few
48x48 faces in memory for the self-test of the next model.
"""

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..model.preprocess import crop_face

if TYPE_CHECKING:  # for the hints only
    from ..vision.capture import Frame
    from ..vision.track import Track

WINDOW_SECONDS = 900.0    # the longest a gate looks back
MAX_RECORDS = 30_000      # 15 min of a 30 frames/s camera (a few MB): bounded whatever the camera does
SAMPLE_SECONDS = 1.0      # how often a face is kept for the self-test
SAMPLES = 8               # faces kept for the self-test

Record = Tuple[float, Optional[Tuple[Tuple[str, float], ...]]]   # (time, faces on an analysed frame, else None)


class Health:
    """A FrameHook: per frame its time and, on analysed frames, (label, top probability) per
    face; `error()` counts a classifier error. Read from the deploy agent's thread."""

    def __init__(self, window_seconds: float = WINDOW_SECONDS, max_records: int = MAX_RECORDS,
                 clock: Any = time.monotonic):
        self.window_seconds, self.clock = window_seconds, clock
        self.lock = threading.Lock()
        self.records: Deque[Record] = deque(maxlen=max_records)
        self.errors: Deque[float] = deque(maxlen=max_records)
        self.samples: Deque[np.ndarray] = deque(maxlen=SAMPLES)
        self.last_sample = float("-inf")
        self.analysed = 0

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: Any) -> None:
        now = self.clock()
        faces = None
        if stats.analysed != self.analysed:   # this frame was looked at (the others carry tracks over)
            self.analysed = stats.analysed
            faces = tuple(_label_and_top(track) for track in tracks)
            if tracks and now - self.last_sample >= SAMPLE_SECONDS and frame.image is not None:
                self.last_sample = now
                self.samples.append(crop_face(frame.image, tracks[0].box[:4]))
        with self.lock:
            self.records.append((now, faces))
            self._forget(now)

    def error(self, exc: Optional[BaseException] = None) -> None:
        """The classifier failed on a frame (the loop went on without its faces)."""
        now = self.clock()
        with self.lock:
            self.errors.append(now)

    def stopping(self) -> None:
        pass

    def close(self) -> None:
        pass

    def recent_faces(self) -> List[np.ndarray]:
        """A few real faces of the last seconds (48x48 grey), for a new model's self-test."""
        with self.lock:
            return list(self.samples)

    def _forget(self, now: float) -> None:
        while self.records and self.records[0][0] < now - self.window_seconds:
            self.records.popleft()
        while self.errors and self.errors[0] < now - self.window_seconds:
            self.errors.popleft()

    def figures(self, since: float, until: Optional[float] = None) -> Dict[str, Any]:
        """The window's figures between two `clock` times (monotonic)."""
        until = self.clock() if until is None else until
        with self.lock:
            records = [r for r in self.records if since <= r[0] <= until]
            errors = sum(1 for t in self.errors if since <= t <= until)
        return figures_of(records, errors, since, until)

# A top probability that varies less than this from face to face answers every face alike: a
# real model on a real camera never does (noise alone moves it more), so a short or still scene,
# whose spread is small anyway, cannot make a good model look like a stuck one.
ALIKE = 0.005


def _label_and_top(track: "Track") -> Tuple[str, float]:
    """The face's label and top probability as the model gave them on this frame (not smoothed)."""
    probs = track.raw if track.raw is not None else track.probs
    index = int(np.argmax(probs))
    return track.labels[index], float(probs[index])


def figures_of(records: Sequence[Record], errors: int, since: float, until: float) -> Dict[str, Any]:
    """{"seconds", "frames", "fps", "faces", "faces_per_frame", "errors", "confidence_mean",
    "confidence_spread", "emotions": {label: share}} of the records between since and until."""
    seconds = max(until - since, 0.0)
    analysed = [faces for _, faces in records if faces is not None]
    tops = [top for faces in analysed for _, top in faces]
    counts: Dict[str, int] = {}
    for faces in analysed:
        for label, _ in faces:
            counts[label] = counts.get(label, 0) + 1
    return {"seconds": round(seconds, 2), "frames": len(records),
            "fps": round(len(records) / seconds, 3) if seconds > 0 else 0.0,
            "faces": len(tops), "faces_per_frame": round(len(tops) / len(analysed), 4) if analysed else 0.0,
            "errors": errors,
            "confidence_mean": round(float(np.mean(tops)), 4) if tops else None,
            "confidence_spread": round(float(np.std(tops)), 4) if tops else None,
            "emotions": {label: round(n / len(tops), 4) for label, n in sorted(counts.items())}}


def emotion_shift(before: Dict[str, float], after: Dict[str, float]) -> float:
    """Total variation distance between two label shares, by label name over both label sets
    (a model with other labels is compared fairly: a label it lacks counts as 0)."""
    return 0.5 * sum(abs(before.get(label, 0.0) - after.get(label, 0.0)) for label in set(before) | set(after))


def judge(before: Dict[str, Any], after: Dict[str, Any], gate: Dict[str, Any]) -> Tuple[str, str]:
    """(verdict, reason): "rolled back" as soon as a threshold is crossed, "wait" until the gate's
    seconds and faces are there, "kept", or "unjudged" when max_seconds passed with too few faces
    (before or after the swap) to compare; its reason is one line."""
    if after["errors"] > gate["max_errors"]:
        return "rolled back", f"{after['errors']} classifier errors during the trial (at most {gate['max_errors']})"
    if after["seconds"] < gate["seconds"]:
        return "wait", f"{after['seconds']:.0f} of {gate['seconds']:g} s"
    if before["fps"] > 0 and after["fps"] < before["fps"] * (1 - gate["max_fps_drop"]):
        return "rolled back", (f"frames/s fell from {before['fps']:.1f} to {after['fps']:.1f} "
                               f"(more than {gate['max_fps_drop']:.0%})")
    few = [name for name, f in (("before", before), ("after", after)) if f["faces"] < gate["min_faces"]]
    if few:
        if after["seconds"] >= gate["max_seconds"]:
            counts = ", ".join(f"{name} {f['faces']}" for name, f in (("before", before), ("after", after)))
            return "unjudged", f"too few faces to judge in {after['seconds']:.0f} s ({counts}; needs {gate['min_faces']})"
        return "wait", f"{after['faces']} of {gate['min_faces']} faces"
    if before["faces_per_frame"] > 0 and after["faces_per_frame"] < before["faces_per_frame"] * (1 - gate["max_faces_drop"]):
        return "rolled back", (f"faces per frame fell from {before['faces_per_frame']:.2f} to "
                               f"{after['faces_per_frame']:.2f} (more than {gate['max_faces_drop']:.0%})")
    shift = emotion_shift(before["emotions"], after["emotions"])
    if shift > gate["max_emotion_shift"]:
        return "rolled back", (f"emotions shifted by {shift:.2f} (at most {gate['max_emotion_shift']:g}): "
                               f"{_top_shares(before['emotions'])} before, {_top_shares(after['emotions'])} after")
    spread_before, spread_after = before["confidence_spread"] or 0.0, after["confidence_spread"] or 0.0
    if spread_after < min(ALIKE, spread_before * gate["min_spread_ratio"]):
        return "rolled back", (f"confidence spread fell from {spread_before:.3f} to {spread_after:.3f} "
                               f"(below {gate['min_spread_ratio']:g} of before): it answers every face alike")
    return "kept", (f"{after['faces']} faces in {after['seconds']:.0f} s: {after['fps']:.1f} frames/s "
                    f"(before {before['fps']:.1f}), emotion shift {shift:.2f}, spread {spread_after:.3f} "
                    f"(before {spread_before:.3f})")


def _top_shares(shares: Dict[str, float], n: int = 2) -> str:
    top = sorted(shares.items(), key=lambda item: -item[1])[:n]
    return ", ".join(f"{label} {share:.0%}" for label, share in top) or "none"

