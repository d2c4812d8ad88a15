"""`fer-edge bench`: per-stage medians after warm-up, frames/s, faces/s and peak RSS.

Each configuration runs the real pipeline over the same decoded video; times are medians
over the measured frames, after `warmup` frames that are thrown away.
"""

import os
import resource
import threading
import time
from typing import Optional, Sequence

import numpy as np

from ..vision.analyzer import FaceAnalyzer
from ..vision.capture import open_source
from ..model.classify import EmotionClassifier
from ..model.latency import median_ms, per_face_ms
from ..vision.detect import make_detector
from ..core.errors import UserError
from ..core.log import progress, say
from ..kiosk.pipeline import Pipeline
from ..vision.track import Tracker


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_pipeline(source: str, model_path: Optional[str], detector: str = "auto", threads: int = 1, warmup: int = 20,
                   max_frames: Optional[int] = None, crops: int = 1) -> dict:
    """Run the pipeline over a video; per-stage medians (ms) and throughput."""
    stop = threading.Event()
    classifier = EmotionClassifier(model_path, threads=threads)
    pipeline = Pipeline(FaceAnalyzer(make_detector(detector, threads=threads), classifier, crops=crops), Tracker())
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
        "model": classifier.name, "detector": pipeline.analyzer.detector.name, "threads": threads,
        "frames": stats.frames, "faces": stats.faces,
        "detect_ms": median_ms(stats.detect), "classify_ms": median_ms(stats.classify),
        "process_fps": round(stats.frames / elapsed, 1) if elapsed else None,
        "faces_per_s": round(stats.faces / elapsed, 1) if elapsed else None,
    }


def bench_decode(source: str, max_frames: Optional[int] = None) -> dict:
    """Decoding alone: median ms per frame and frames/s."""
    src = open_source(source=source)
    times, t = [], time.perf_counter()
    for _ in src.frames():
        now = time.perf_counter()
        times.append(now - t)
        t = now
        if max_frames and len(times) >= max_frames:
            break
    src.close()
    return {"decode_ms": median_ms(times[5:] or times), "decode_fps": round(len(times) / sum(times), 1) if times else None}


def bench_classifier(model_path: str, faces: np.ndarray, threads: int = 1, warmup: int = 20, repeats: int = 200) -> dict:
    """Per-face latency of a model file (`faces` (N,views,48,48): all of a face's views in one call)."""
    classifier = EmotionClassifier(model_path, threads=threads)
    return {"model": classifier.name, "threads": threads, "per_face_ms": per_face_ms(classifier, faces, warmup, repeats)}


def sample_faces(source: str, detector: str = "auto", n: int = 64, crops: int = 1) -> np.ndarray:
    """Real face crops from a video, for the classifier benchmark: (n, 48, 48), or with
    `crops` > 1 each face's views, (n, crops, 48, 48)."""
    found: list = []
    analyzer = FaceAnalyzer(make_detector(detector), EmotionClassifier(), crops=crops)
    src = open_source(source=source)
    for frame in src.frames():
        image = frame.image
        if image is not None:
            found.extend(analyzer.views(image, detection) if crops > 1 else analyzer.crop(image, detection)
                         for detection in analyzer.detect(image))
        if len(found) >= n:
            break
    src.close()
    if not found:
        raise UserError(f"{source}: no faces found to benchmark the classifier on")
    return np.stack(found)


def format_table(results: dict) -> str:
    """`fer-edge bench`'s human-readable lines."""
    d = results["decode"]
    width = max([len(c["model"]) + 2 for c in results["classifier"]] + [28])
    lines = [f"decode: {d['decode_ms']} ms/frame ({d['decode_fps']} frames/s)"
             + (f"; each face read on {results['crops']} crops" if results.get("crops", 1) > 1 else ""),
             f"{'model':<{width}}{'thr':>4}{'face ms':>9}{'detect ms':>11}{'classify ms':>13}{'frames/s':>10}{'faces/s':>9}"]
    for c, p in zip(results["classifier"], results["pipeline"]):
        lines.append(f"{c['model']:<{width}}{c['threads']:>4}{c['per_face_ms']:>9}{p['detect_ms']:>11}{p['classify_ms']:>13}"
                     f"{p['process_fps']:>10}{p['faces_per_s']:>9}")
    lines.append(f"detector: {results['pipeline'][0]['detector']}; peak RSS {results['peak_rss_mb']} MB; "
                 "frames/s excludes decoding (see decode line)")
    return "\n".join(lines)


def run_bench(source: str, models: Sequence[str], detector: str, thread_counts: Sequence[int], warmup: int,
              max_frames: Optional[int], crops: int = 1) -> dict:
    """Every model at every thread count over the same video (each face on `crops` framings)."""
    from ..model.classify import SHIPPED_MODELS, default_model_path, float32_twin

    if not models:
        shipped = [default_model_path(size) for size in SHIPPED_MODELS]
        models = [path for model in shipped for path in (model, float32_twin(model)) if os.path.exists(path)]
    say(f"sampling faces from {os.path.basename(source)} and timing its decoding ...")
    faces = sample_faces(source, detector, crops=crops)
    results: dict = {"source": source, "crops": crops, "decode": bench_decode(source, max_frames), "pipeline": [],
                     "classifier": []}
    runs = [(model, threads) for model in models for threads in thread_counts or (1, 2)]
    for model, threads in progress(runs, "benchmarking models x threads"):
        results["classifier"].append(bench_classifier(model, faces, threads))
        results["pipeline"].append(bench_pipeline(source, model, detector, threads, warmup, max_frames, crops))
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return results
