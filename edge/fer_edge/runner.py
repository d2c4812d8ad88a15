"""The camera loop: capture -> detect -> crop -> classify (one batch) -> track -> log.

Everything is built once before the first frame (one interpreter for the run, never one
per frame); the loop only moves frames. Stage times are kept for `fer-edge bench`.
"""

import os
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

import cv2
import numpy as np

from .preprocess import DEFAULT_MARGIN, crop_detected
from .report import parse_since
from .sinks import event


KEPT_TIMINGS = 10_000  # per stage: enough for a benchmark's medians, bounded for a months-long service


def _timings():
    return deque(maxlen=KEPT_TIMINGS)


def _last(timings, n):
    """The newest n timings, without copying the whole deque (the web status asks every second)."""
    return list(islice(reversed(timings), n))


@dataclass
class Stats:
    frames: int = 0
    faces: int = 0
    updates: int = 0
    tracks: int = 0                  # distinct faces tracked (track ids only grow)
    first_face_at: float = None      # monotonic time the first face was logged
    started: float = field(default_factory=time.monotonic)
    ended: float = None              # monotonic time the last frame was done (set by Pipeline.run)
    decode: deque = field(default_factory=_timings)
    detect: deque = field(default_factory=_timings)
    classify: deque = field(default_factory=_timings)
    total: deque = field(default_factory=_timings)

    def elapsed(self):
        """Seconds of the camera loop: to its last frame once it has ended, not to shutdown's end."""
        return (self.ended or time.monotonic()) - self.started

    def fps(self):
        elapsed = self.elapsed()
        return self.frames / elapsed if elapsed > 0 else 0.0

    def recent_fps(self, n=50):
        """Frames/s over the last n frames' processing times."""
        recent = _last(self.total, n)
        busy = sum(recent)
        return len(recent) / busy if busy > 0 else 0.0


def draw(image, tracks):
    """Boxes, labels, confidence and track ids on a copy of the frame."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for track in tracks:
        x, y, w, h = (int(round(v)) for v in track.box)
        colour = (0, 200, 0) if track.label in ("happy", "surprise", "neutral") else (0, 120, 255)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        text = f"#{track.id} {track.label} {track.confidence * 100:.0f}%"
        cv2.putText(out, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


class Annotator:
    """Writes the annotated video (mp4v works in every OpenCV build, headless too)."""

    def __init__(self, path, fps):
        self.path, self.fps, self.writer = path, fps or 15.0, None

    def write(self, image):
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: cannot write video")
        self.writer.write(image)

    def close(self):
        if self.writer is not None:
            self.writer.release()


class Pipeline:
    def __init__(self, detector, classifier, tracker, sinks=(), device_id="fer-edge", log_interval=1.0,
                 margin=DEFAULT_MARGIN, annotator=None, window=None, save_crops=None, on_frame=None, notifier=None,
                 sessions=None, publisher=None, stats_interval=60.0, live=None):
        self.detector, self.classifier, self.tracker = detector, classifier, tracker
        self.sinks, self.device_id, self.log_interval, self.margin = list(sinks), device_id, log_interval, margin
        self.annotator, self.window, self.save_crops, self.on_frame = annotator, window, save_crops, on_frame
        self.notifier = notifier
        self.sessions, self.publisher, self.stats_interval = sessions, publisher, stats_interval
        self.sessions_done = 0
        self.live = live
        self.last_stats = time.monotonic()
        self.last_logged = {}
        self.stats = Stats()
        if save_crops:
            os.makedirs(save_crops, exist_ok=True)

    def detect(self, frame):
        if frame.detect_image is None:
            return self.detector.detect(frame.image)
        return [found.scaled(frame.detect_scale) for found in self.detector.detect(frame.detect_image)]

    def process(self, frame, decode_seconds=0.0):
        """Analyse one frame; returns the tracks seen in it."""
        t0 = time.perf_counter()
        boxes = self.detect(frame)
        t1 = time.perf_counter()
        if boxes:
            faces = np.stack([crop_detected(frame.image, box, self.margin) for box in boxes])
            probs = self.classifier.predict(faces)
        else:
            faces, probs = None, np.zeros((0, 7), np.float32)
        t2 = time.perf_counter()
        tracks = self.tracker.update(boxes, probs, frame.media_time)
        self._log(frame, tracks, faces)
        if self.sessions is not None:
            self._finish_sessions(self.sessions.update(frame.media_time, tracks))
        stats = self.stats
        stats.frames += 1
        stats.faces += len(boxes)
        stats.decode.append(decode_seconds)
        stats.detect.append(t1 - t0)
        stats.classify.append(t2 - t1)
        stats.total.append(decode_seconds + time.perf_counter() - t0)
        if self.annotator or self.window or self.on_frame:
            annotated = draw(frame.image, tracks)
            if self.annotator:
                self.annotator.write(annotated)
            if self.window:
                self.window.show(annotated)
            if self.on_frame:
                self.on_frame(annotated, tracks, stats)
        if self.live:
            self.live.offer(frame.image, tracks, stats)
        if self.notifier:
            self.notifier.frame_done(stats)
        if self.publisher and time.monotonic() - self.last_stats >= self.stats_interval:
            self.last_stats = time.monotonic()
            self.publisher.publish_stats(self.stats_payload())
        return tracks

    def _finish_sessions(self, finished):
        for session in finished:
            self.sessions_done += 1
            for sink in self.sinks:
                sink.write_session(session)
            if self.publisher:
                self.publisher.publish_session(session)

    def stats_payload(self):
        """What the stats topic carries: throughput, stage latencies, counts, uptime."""
        s = self.stats
        recent = lambda values: round(float(np.median(_last(values, 100))) * 1000, 2) if values else None  # noqa: E731
        payload = {"device": self.device_id, "ts": round(time.time(), 3), "uptime": round(time.monotonic() - s.started, 1),
                   "frames": s.frames, "fps": round(s.fps(), 2), "faces": s.faces, "tracks": s.tracks,
                   "detect_ms": recent(s.detect), "classify_ms": recent(s.classify), "sessions": self.sessions_done}
        for sink in self.sinks:
            if hasattr(sink, "sessions_since"):
                payload["sessions_today"] = sink.sessions_since(parse_since("today"))
        if self.publisher:
            payload["outbox_pending"] = self.publisher.outbox.count()
            payload["dropped"] = dict(self.publisher.outbox.counters(), emotion_offline=self.publisher.dropped_offline)
        return payload

    def _log(self, frame, tracks, faces):
        now = time.time()
        for i, track in enumerate(tracks):
            self.stats.tracks = max(self.stats.tracks, track.id)
            last = self.last_logged.get(track.id)
            if last is not None and frame.media_time - last < self.log_interval:
                continue
            self.last_logged[track.id] = frame.media_time
            ev = event(track, self.device_id, frame.index, now)
            for sink in self.sinks:
                sink.write(ev)
            if self.publisher:
                self.publisher.publish_emotion(ev)
            self.stats.updates += 1
            if self.stats.first_face_at is None:
                self.stats.first_face_at = time.monotonic()
            if self.save_crops and faces is not None and i < len(faces):
                cv2.imwrite(os.path.join(self.save_crops, f"f{frame.index:07d}_t{track.id}.png"), faces[i])
        for ended in self.tracker.ended:
            self.last_logged.pop(ended.id, None)

    def run(self, frames, stop):
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

    def close(self):
        if self.notifier:
            self.notifier.stopping()
        if self.sessions is not None:
            self._finish_sessions(self.sessions.flush())
        if self.publisher:
            self.publisher.publish_stats(self.stats_payload())
            self.publisher.close()
        for sink in self.sinks:
            sink.close(frames=self.stats.frames, faces=self.stats.faces, updates=self.stats.updates)
        if self.annotator:
            self.annotator.close()
        if self.window:
            self.window.close()


class Window:
    """--show: an OpenCV window, where the installed OpenCV has a GUI."""

    def __init__(self, title="fer-edge"):
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OSError("--show needs an OpenCV build with a GUI (opencv-python, not -headless) and a display; "
                          "use --annotate OUT.mp4 instead") from None

    def show(self, image):
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self):
        cv2.destroyWindow(self.title)
