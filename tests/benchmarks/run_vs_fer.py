"""Benchmark: `fer-edge run` against the `fer` package (25.10.3) on the same video, in one run.

Every figure is measured here, now, on this machine: whole-process frames/s (start-up
included; every frame analysed with --every-frame, as the peer does; the default cadence
analyses 6 frames per second of video and carries faces between them), time from process
start to the first logged face, and peak RSS, each as the median of --repeats runs. The peer runs `FER().detect_emotions`
per frame (its defaults: Haar cascade and its Keras mini-Xception).

    python tests/benchmarks/run_vs_fer.py [--video PATH] [--repeats 3] [--json OUT]

The peer needs TensorFlow and `pip install --no-deps fer==25.10.3 "opencv-python-headless<5"`;
without it the peer rows are skipped and said so.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "photos" / "WolfgangLanger_Pexels.mp4"

PEER = r"""
import sys, time, cv2
from fer.fer import FER
detector = FER()
video = cv2.VideoCapture(sys.argv[1])
frames = faces = 0
while True:
    ok, frame = video.read()
    if not ok:
        break
    found = detector.detect_emotions(frame)
    if found and faces == 0:
        print("FIRST", flush=True)
    frames += 1
    faces += len(found)
print(f"FRAMES {frames} FACES {faces}", flush=True)
"""

MEASURE = r"""
import resource, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
first = None
lines = []
for line in process.stdout:
    if first is None and (line.startswith("FIRST") or line.startswith("{")):
        first = time.perf_counter() - start
    lines.append(line)
err = process.stderr.read()
process.wait()
wall = time.perf_counter() - start
print(repr({"rc": process.returncode, "wall": wall, "first": first,
            "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "tail": (lines[-1] if lines else "") + err[-400:]}))
"""


def measure(command):
    """Run `command` in a fresh wrapper process: wall time, first-face time, peak RSS."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    result = eval(out.stdout.strip().splitlines()[-1])  # our own repr from MEASURE
    if result["rc"] != 0:
        raise RuntimeError(f"{command[0]} failed: {result['tail']}")
    return result


def fer_edge_command(video, detector, model=None, *extra):
    exe = shutil.which("fer-edge", path=os.path.dirname(sys.executable)) or "fer-edge"
    return [exe, "run", "--source", str(video), "--no-db", "--json", "--log-interval", "1000",
            "--detector", detector, *extra] + (["--model", model] if model else [])


def peer_available():
    probe = subprocess.run([sys.executable, "-c", "import fer.fer"], capture_output=True, text=True)
    return probe.returncode == 0


def frame_count(video):
    import cv2
    capture = cv2.VideoCapture(str(video))
    n = 0
    while capture.grab():
        n += 1
    return n


def summarise(runs, frames):
    return {"fps": round(frames / statistics.median(r["wall"] for r in runs), 1),
            "first_face_s": round(statistics.median(r["first"] for r in runs if r["first"] is not None), 3),
            "peak_rss_mb": round(statistics.median(r["rss_mb"] for r in runs), 1),
            "wall_s": round(statistics.median(r["wall"] for r in runs), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="emotion model (default: the shipped one)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    video = Path(args.video)
    if not video.exists():
        sys.exit(f"video not found: {video}")
    frames = frame_count(video)
    results = {"video": video.name, "frames": frames, "cpu_count": os.cpu_count(),
               "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    every = "--every-frame"
    configs = {"fer-edge --every-frame": fer_edge_command(video, "blazeface", args.model, every),
               "fer-edge --every-frame --threads 1": fer_edge_command(video, "blazeface", args.model, every,
                                                                      "--threads", "1"),
               "fer-edge --every-frame --no-mirror": fer_edge_command(video, "blazeface", args.model, every,
                                                                      "--no-mirror"),
               "fer-edge --every-frame, haar": fer_edge_command(video, "haar", args.model, every),
               "fer-edge (default cadence)": fer_edge_command(video, "blazeface", args.model)}
    if peer_available():
        configs["fer 25.10.3 (peer)"] = [sys.executable, "-c", PEER, str(video)]
    else:
        print("peer `fer` not installed: pip install --no-deps fer==25.10.3 (needs TensorFlow)", file=sys.stderr)
    for name, command in configs.items():
        runs = [measure(command) for _ in range(args.repeats)]
        results[name] = summarise(runs, frames)
        print(f"measured {name}: {results[name]}", file=sys.stderr, flush=True)
    peer = results.get("fer 25.10.3 (peer)")
    print(f"{frames} frames of {video.name}, whole process, median of {args.repeats} runs, {os.cpu_count()} cores")
    print(f"{'':38}{'frames/s':>10}{'vs fer':>8}{'first face s':>14}{'peak RSS MB':>13}")
    for name in configs:
        r = results[name]
        ratio = f"{r['fps'] / peer['fps']:.1f}x" if peer else "-"
        r["vs_peer"] = round(r["fps"] / peer["fps"], 2) if peer else None
        print(f"{name:<38}{r['fps']:>10}{ratio:>8}{r['first_face_s']:>14}{r['peak_rss_mb']:>13}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
