"""`fer-edge bench`: per-stage medians after warm-up, frames/s, faces/s and peak RSS.

Each configuration runs the real pipeline over the same decoded video; times are medians
over the measured frames, after `warmup` frames that are thrown away.
"""

import resource
import statistics
import threading
import time

import numpy as np

from .capture import open_source
from .classify import EmotionClassifier
from .detect import make_detector
from .preprocess import crop_detected
from .runner import Pipeline
from .track import Tracker


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_ms(values):
    return round(statistics.median(values) * 1000, 3) if values else None


def bench_pipeline(source, model_path, detector="auto", threads=1, warmup=20, max_frames=None):
    """Run the pipeline over a video; per-stage medians (ms) and throughput."""
    stop = threading.Event()
    classifier = EmotionClassifier(model_path, threads=threads)
    pipeline = Pipeline(make_detector(detector, threads=threads), classifier, Tracker(), sinks=(), margin=classifier.margin)
    src = open_source(source=source, stop=stop)
    frames = 0
    start = None
    for frame in src.frames():
        if frames == warmup:
            pipeline.stats = type(pipeline.stats)()
            start = time.perf_counter()
        pipeline.process(frame, 0.0)
        frames += 1
        if max_frames and frames >= max_frames + warmup:
            break
    src.close()
    elapsed = time.perf_counter() - (start or time.perf_counter())
    stats = pipeline.stats
    return {
        "model": classifier.name, "detector": pipeline.detector.name, "threads": threads,
        "frames": stats.frames, "faces": stats.faces,
        "detect_ms": _median_ms(stats.detect), "classify_ms": _median_ms(stats.classify),
        "process_fps": round(stats.frames / elapsed, 1) if elapsed else None,
        "faces_per_s": round(stats.faces / elapsed, 1) if elapsed else None,
    }


def bench_decode(source, max_frames=None):
    """Decoding alone: median ms per frame and frames/s."""
    src = open_source(source=source)
    times, t = [], time.perf_counter()
    for frame in src.frames():
        now = time.perf_counter()
        times.append(now - t)
        t = now
        if max_frames and len(times) >= max_frames:
            break
    src.close()
    return {"decode_ms": _median_ms(times[5:]), "decode_fps": round(len(times) / sum(times), 1) if times else None}


def per_face_ms(classifier, faces, warmup=20, repeats=200):
    """Median latency of one face per call, after warm-up calls that are thrown away."""
    for i in range(warmup):
        classifier.predict(faces[i % len(faces)])
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        classifier.predict(faces[i % len(faces)])
        times.append(time.perf_counter() - t)
    return _median_ms(times)


def bench_classifier(model_path, faces, threads=1, warmup=20, repeats=200):
    """Per-face latency of a model file."""
    classifier = EmotionClassifier(model_path, threads=threads)
    return {"model": classifier.name, "threads": threads, "per_face_ms": per_face_ms(classifier, faces, warmup, repeats)}


def sample_faces(source, detector="auto", n=64):
    """Real face crops from a video, for the classifier benchmark."""
    found = []
    det = make_detector(detector)
    src = open_source(source=source)
    for frame in src.frames():
        for box in det.detect(frame.image):
            found.append(crop_detected(frame.image, box))
        if len(found) >= n:
            break
    src.close()
    if not found:
        raise ValueError(f"{source}: no faces found to benchmark the classifier on")
    return np.stack(found)
