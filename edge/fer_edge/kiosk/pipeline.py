"""The camera loop: frame -> faces (FaceAnalyzer) -> tracks -> sessions -> sinks and frame hooks.

Everything is built before the first frame (one interpreter for the run, never one per
frame); the loop only moves frames. Where results go is not the loop's business: every
event goes to each sink (core.events.EventSink), every frame to each `FrameHook` (the
annotated video, the window, the live view, the systemd notifier). Stage times are kept
for `fer-edge bench`. A deployed model takes over at a frame boundary (`request_swap`), so
no frame is lost to it.
"""

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Callable, Deque, Dict, Iterable, List, Optional, Protocol, Tuple

import cv2
import numpy as np

from ..vision.analyzer import Face, FaceAnalyzer
from ..vision.cadence import Cadence
from ..vision.capture import Frame
from ..core.clock import WallClock
from ..core.events import EventSink, Sinks
from .sessions import SessionTracker
from ..core.records import CAMERA_LOST, MODEL_CHANGED, SOURCE_ENDED, RunStats, TrackUpdate, View, Visit
from ..vision.track import Track, Tracker

if TYPE_CHECKING:  # for the hint only
    from ..model.classify import EmotionClassifier

OnError = Callable[[Exception], None]

KEPT_TIMINGS = 10_000  # per stage: enough for a benchmark's medians, bounded for a months-long service


def _timings() -> Deque[float]:
    return deque(maxlen=KEPT_TIMINGS)


def _last(timings: Deque[float], n: int) -> List[float]:
    """The newest n timings, without copying the whole deque (the web status asks every second)."""
    return list(islice(reversed(timings), n))


@dataclass
class Stats:
    frames: int = 0
    analysed: int = 0                # frames detected and classified (the others carry tracks over)
    faces: int = 0
    updates: int = 0
    tracks: int = 0                  # distinct faces tracked (track ids only grow)
    camera_lost: int = 0             # times no frame came for longer than a visit's gap
    view: Optional[View] = None      # who is in view: the view last sent
    last_frame_at: Optional[float] = None  # monotonic time the newest frame was done
    first_face_at: Optional[float] = None  # monotonic time the first face was logged
    started: float = field(default_factory=time.monotonic)
    ended: Optional[float] = None              # monotonic time the last frame was done (set by Pipeline.run)
    decode: deque = field(default_factory=_timings)
    detect: Deque[float] = field(default_factory=_timings)
    classify: Deque[float] = field(default_factory=_timings)
    total: deque = field(default_factory=_timings)

    def elapsed(self) -> float:
        """Seconds of the camera loop: to its last frame once it has ended, not to shutdown's end."""
        return (self.ended or time.monotonic()) - self.started

    def fps(self) -> float:
        elapsed = self.elapsed()
        return self.frames / elapsed if elapsed > 0 else 0.0

    def recent_fps(self, n: int = 50) -> float:
        """Frames/s over the last n frames' processing times."""
        recent = _last(self.total, n)
        busy = sum(recent)
        return len(recent) / busy if busy > 0 else 0.0


class FrameHook(Protocol):
    """Something that sees every processed frame: the annotated video, the window, the live
    view, the systemd notifier."""

    def on_frame(self, frame: Frame, tracks: List[Track], stats: "Stats") -> None:
        """Called after every processed frame, with the tracks seen in it."""

    def stopping(self) -> None:
        """The run is about to end (before the last visits are finished)."""

    def close(self) -> None:
        """The run has ended."""


class Closable(Protocol):
    def close(self) -> None: ...


class Pipeline:
    def __init__(self, analyzer: FaceAnalyzer, tracker: Tracker, sinks: Iterable[EventSink] = (),
                 hooks: Iterable[FrameHook] = (), device_id: str = "fer-edge", log_interval: float = 1.0,
                 save_crops: Optional[str] = None, sessions: Optional[SessionTracker] = None,
                 stats_interval: float = 60.0, clock: Optional[WallClock] = None,
                 cadence: Optional[Cadence] = None, store: Optional[Closable] = None):
        """`store`: the store file the sinks share (the composition root opened it), closed after them."""
        self.analyzer, self.tracker = analyzer, tracker
        self.sinks = sinks if isinstance(sinks, Sinks) else Sinks(sinks)
        self.hooks = list(hooks)
        self.device_id, self.log_interval, self.save_crops = device_id, log_interval, save_crops
        self.sessions, self.stats_interval = sessions, stats_interval
        self.sessions_done = 0
        self.last_stats = time.monotonic()
        self.last_logged: Dict[int, float] = {}
        self.view_sent = float("-inf")
        self.stats = Stats()
        self.store = store
        self.clock = clock or WallClock(time.time())
        self.last_media_time: Optional[float] = None
        self.cadence = cadence or Cadence()
        self.frames_since_analysis = 0
        self.last_crops: Dict[int, np.ndarray] = {}  # track id -> its face at the last analysis (only with save_crops)
        self.stall_seconds = sessions.gap_seconds if sessions is not None else 3.0
        self.swap: Optional[Tuple["EmotionClassifier", Optional[OnError], Optional[Callable[[int], None]]]] = None
        self.on_classify_error: Optional[OnError] = None
        if save_crops:
            os.makedirs(save_crops, exist_ok=True)

    def process(self, frame: Frame, decode_seconds: float = 0.0) -> List[Track]:
        """Analyse one frame (or, between analyses, carry the tracks over); returns the tracks seen in it."""
        self.clock.check()
        if self.swap is not None:
            self._swap(frame)
        if self.last_media_time is not None and frame.media_time - self.last_media_time > self.stall_seconds:
            self._camera_lost()
        self.last_media_time = frame.media_time
        t0 = time.perf_counter()
        self.frames_since_analysis += 1
        stats = self.stats
        t, coasting = frame.media_time, self.tracker.coast()
        image = frame.image if self.cadence.due(t, coasting) else None   # decoded only when looked at
        analysed = image is not None
        if image is not None:
            found = self.analyzer.detect(image, frame.detect_image, frame.detect_scale)
            t1 = time.perf_counter()
            found, faces, probabilities = self._classify(image, found)
            t2 = time.perf_counter()
            tracks = self.tracker.update(found, probabilities, t, frames=self.frames_since_analysis)
            self.cadence.analysed(t)
            self.frames_since_analysis = 0
            stats.analysed += 1
            stats.detect.append(t1 - t0)
            stats.classify.append(t2 - t1)
        else:
            faces, tracks = [], coasting
        self._log(frame, tracks, faces, analysed)
        if self.sessions is not None:
            self._finish_sessions(self.sessions.update(frame.media_time, tracks))
        self._send_view(frame, tracks)
        stats.frames += 1
        stats.faces += len(tracks)  # on an analysed frame, one track per face found
        stats.decode.append(decode_seconds)
        stats.total.append(decode_seconds + time.perf_counter() - t0)
        stats.last_frame_at = time.monotonic()
        for hook in self.hooks:
            hook.on_frame(frame, tracks, stats)
        if time.monotonic() - self.last_stats >= self.stats_interval:
            self.last_stats = time.monotonic()
            self._send_stats()
        return tracks

    def _classify(self, image: np.ndarray, found: list) -> Tuple[list, List[Face], np.ndarray]:
        """The faces' probabilities; a model on trial that fails is counted (`on_error`) and the
        frame goes on as one without faces: a bad model must not stop the camera."""
        try:
            faces = self.analyzer.classify(image, found)
            return found, faces, np.array([f.probabilities for f in faces], np.float32).reshape(-1, len(self.analyzer.labels))
        except Exception as exc:
            if self.on_classify_error is None:
                raise
            self.on_classify_error(exc)
            return [], [], np.zeros((0, len(self.analyzer.labels)), np.float32)

    def request_swap(self, classifier: "EmotionClassifier", on_error: Optional[OnError] = None,
                     on_swapped: Optional[Callable[[int], None]] = None) -> None:
        """Run `classifier` from the start of the next frame (any thread may ask; the camera
        loop swaps). `on_error`: while it runs, its exceptions go there instead of stopping
        the loop; `on_swapped(n)`: called once it has the run's frame n (counted from 0, over
        every loop of a file) to itself."""
        self.swap = (classifier, on_error, on_swapped)

    def _swap(self, frame: Frame) -> None:
        """Another model from this frame on. With other labels the visits in progress end
        ("model changed") and the tracks start over; every sink hears of it."""
        assert self.swap is not None
        (classifier, self.on_classify_error, on_swapped), self.swap = self.swap, None
        relabelled = classifier.labels != self.analyzer.labels
        self.analyzer.use(classifier)
        if relabelled:
            if self.sessions is not None:
                self._finish_sessions(self.sessions.flush(MODEL_CHANGED))
                self.sessions.relabel(classifier.labels)
            self.tracker.forget()
            self.tracker.labels = classifier.labels
            self._forget_ended()
            self.stats.view = None   # the view is said again, in the new labels
        self.sinks.model_changed(classifier.name, classifier.labels)
        for hook in self.hooks:   # a hook that shows the model (the live page) hears it too
            changed = getattr(hook, "model_changed", None)
            if changed is not None:
                changed(classifier.name, classifier.labels)
        if on_swapped is not None:
            on_swapped(self.stats.frames)

    def _send_view(self, frame: Frame, tracks: List[Track]) -> None:
        """The view goes out when the number of faces changes, and once per log interval while
        someone is there; an empty scene is said once. It is built only when it goes out."""
        last = self.stats.view
        changed = last is None or len(tracks) != last.people
        if not (changed or (tracks and frame.media_time - self.view_sent >= self.log_interval)):
            return
        visits = self.sessions.in_progress(frame.media_time) if self.sessions is not None else []
        self.stats.view = now = View.of(tracks, visits, self.device_id, time.time())
        self.view_sent = frame.media_time
        self.sinks.view(now)

    def _camera_lost(self) -> None:
        """No frame for longer than a visit's gap: the visits end at their last sighting, as
        "camera lost", and whoever is there afterwards is a new track."""
        self.stats.camera_lost += 1
        if self.sessions is not None:
            self._finish_sessions(self.sessions.flush(CAMERA_LOST))
        self.tracker.forget()
        self.cadence.reset()
        self._forget_ended()

    def _forget_ended(self) -> None:
        """Drop what was kept per track for the tracks the tracker has just ended."""
        for ended in self.tracker.ended:
            self.last_logged.pop(ended.id, None)
            self.last_crops.pop(ended.id, None)

    def _finish_sessions(self, finished: List[Visit]) -> None:
        for session in finished:
            self.sessions_done += 1
            self.sinks.session(session)

    def health(self) -> dict:
        """What the sinks report of themselves (log state, broker state, backlog), merged."""
        return self.sinks.health()

    def alive(self) -> bool:
        """Every sink's threads still run (the watchdog and /healthz follow this)."""
        return self.sinks.alive()

    def stats_payload(self) -> RunStats:
        """What the stats message carries: throughput, stage latencies, counts, uptime, sink health."""
        s = self.stats
        recent = lambda values: round(float(np.median(_last(values, 100))) * 1000, 2) if values else None  # noqa: E731
        return RunStats(device=self.device_id, ts=round(time.time(), 3), uptime=round(time.monotonic() - s.started, 1),
                        frames=s.frames, fps=round(s.fps(), 2), faces=s.faces, tracks=s.tracks,
                        detect_ms=recent(s.detect), classify_ms=recent(s.classify), sessions=self.sessions_done,
                        camera_lost=s.camera_lost, health=self.health())

    def _send_stats(self) -> None:
        self.sinks.stats(self.stats_payload())

    def _log(self, frame: Frame, tracks: List[Track], faces: List[Face], analysed: bool) -> None:
        now = time.time()
        if self.save_crops and faces:  # the crop of each track's detection at this analysis
            self.last_crops.update({track.id: faces[track.detection].crop for track in tracks})
        for track in tracks:
            self.stats.tracks = max(self.stats.tracks, track.id)
            last = self.last_logged.get(track.id)
            if last is not None and frame.media_time - last < self.log_interval:
                continue
            self.last_logged[track.id] = frame.media_time
            self.sinks.update(TrackUpdate.of(track, self.device_id, frame.index, now, analysed))
            self.stats.updates += 1
            if self.stats.first_face_at is None:
                self.stats.first_face_at = time.monotonic()
            if self.save_crops and track.id in self.last_crops:
                cv2.imwrite(os.path.join(self.save_crops, f"f{frame.index:07d}_t{track.id}.png"),
                            self.last_crops[track.id])
        self._forget_ended()

    def run(self, frames: Iterable[Frame], stop: threading.Event) -> Stats:
        """Process frames until they end or `stop` is set."""
        iterator = iter(frames)
        while not stop.is_set():
            t = time.perf_counter()
            frame = next(iterator, None)
            if frame is None:
                break
            self.process(frame, time.perf_counter() - t)
        self.stats.ended = time.monotonic()
        return self.stats

    def close(self, ended_by: str = SOURCE_ENDED) -> None:
        """Finish the visits in progress (`ended_by`: why the run ends), send the last stats, close everything."""
        for hook in self.hooks:
            hook.stopping()
        if self.sessions is not None:
            self._finish_sessions(self.sessions.flush(ended_by))
        if self.sinks:
            self._send_stats()
        summary = {"frames": self.stats.frames, "faces": self.stats.faces, "updates": self.stats.updates}
        try:
            self.sinks.close(summary)
        finally:
            if self.store is not None:
                self.store.close()
        for hook in self.hooks:
            hook.close()
