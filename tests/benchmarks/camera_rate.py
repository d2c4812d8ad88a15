"""Benchmark: what watching a camera costs, as CPU-seconds per second of video.

A kiosk runs at camera rate all day; what matters is the share of the CPU it takes to keep
up, not how fast it can chew through a file. This runs whole `fer-edge run --realtime`
processes (the file paced at its own frame rate, as a camera delivers it) with the default
cadence and with `--every-frame`, alternately, and reads each process's CPU time from the
kernel (user + system, all threads). It then splits the cost by stage in one process and
turns the split into a Raspberry Pi estimate (see docs/performance.md).

    python tests/benchmarks/camera_rate.py [--video PATH] [--repeats 3] [--crops N] [--json OUT]

With --crops N every run reads each face on N framings (`fer-edge run --crops N`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from fer_edge.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "photos" / "WolfgangLanger_Pexels.mp4"
FER_EDGE = str(Path(sys.executable).parent / "fer-edge")
CONFIGS = {"default cadence": [], "--every-frame": ["--every-frame"],
           "--threads 1": ["--threads", "1"], "--threads 1 --every-frame": ["--threads", "1", "--every-frame"]}
BY_DEFAULT = {s.key: s.default for s in SETTINGS if s.section == "cadence"}  # the shipped cadence
# How much slower than one core of the x86 machine in docs/performance.md each Pi core is
# (sysbench cpu, one thread), and the extra for the network stages on a Pi 4, whose A72 has no
# int8 dot products: an estimate, not a measurement (docs/performance.md says where it comes from).
PI_FACTORS = {"Pi 5 (Cortex-A76, 2.4 GHz)": (2.4, 1.0), "Pi 4 (Cortex-A72, 1.8 GHz)": (5.5, 1.5)}
NETWORK_STAGES = ("detect", "classify")


def video_seconds(video):
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames / fps, int(frames), fps


def cpu_seconds(video, flags, crops=1, size="auto"):
    """CPU time of one whole realtime run (start-up included), from the kernel's rusage."""
    process = subprocess.Popen([FER_EDGE, "run", "--source", str(video), "--realtime", "--no-db", "--quiet",
                                "--crops", str(crops), "--model-size", size, *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fer-edge run {' '.join(flags)} failed: {process.stderr.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime


def stage_split(video, every_frame, threads=1, crops=1, size="auto"):
    """Per-stage cost in seconds per second of video, in one process on one thread (so time
    spent is CPU time spent): decode, detect, classify, and the rest of the loop."""
    import threading

    from fer_edge.vision.analyzer import FaceAnalyzer
    from fer_edge.vision.cadence import Cadence
    from fer_edge.vision.capture import open_source
    from fer_edge.model.classify import EmotionClassifier, shipped_model
    from fer_edge.vision.detect import make_detector
    from fer_edge.kiosk.pipeline import Pipeline
    from fer_edge.vision.track import Tracker

    analyzer = FaceAnalyzer(make_detector("auto", threads=threads), EmotionClassifier(shipped_model(size)[0], threads=threads),
                             crops=crops)
    cadence = Cadence() if every_frame else Cadence(BY_DEFAULT["analyse_fps"])
    pipeline = Pipeline(analyzer, Tracker(), cadence=cadence)
    source = open_source(source=str(video), stop=threading.Event(), lean=True)
    s = pipeline.run(source.frames(), threading.Event())  # times each stage, decoding included
    source.close()
    seconds, _, _ = video_seconds(video)
    per_second = lambda values: sum(values) / seconds  # noqa: E731
    split = {"decode": per_second(s.decode), "detect": per_second(s.detect), "classify": per_second(s.classify)}
    split["tracking, sessions, logging"] = per_second(s.total) - sum(split.values())
    return {k: round(v, 4) for k, v in split.items()}, s.analysed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crops", type=int, default=1, help="framings per face (fer-edge run --crops)")
    parser.add_argument("--model-size", default="auto", choices=("auto", "small", "large"),
                        help="which shipped model (fer-edge run --model-size)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    seconds, frames, fps = video_seconds(args.video)
    print(f"{Path(args.video).name}: {frames} frames at {fps:.0f} frames/s ({seconds:.1f} s), realtime, whole processes"
          + (f", --crops {args.crops}" if args.crops > 1 else ""))
    runs = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):  # alternate, so a busy moment of the machine hits every configuration
        for name, flags in CONFIGS.items():
            runs[name].append(cpu_seconds(args.video, flags, args.crops, args.model_size) / seconds)
    results = {"video": args.video, "seconds": seconds, "crops": args.crops, "cpu_s_per_video_s": {}}
    for name, values in runs.items():
        results["cpu_s_per_video_s"][name] = round(statistics.median(values), 4)
        print(f"{name:<28} {statistics.median(values):.3f} CPU-s per video-s  (runs: "
              f"{', '.join(f'{v:.3f}' for v in values)})")
    cpu = results["cpu_s_per_video_s"]
    print(f"ratio, every frame / default: {cpu['--every-frame'] / cpu['default cadence']:.2f}x")
    results["stages"] = {}
    for name, every_frame in (("default cadence", False), ("--every-frame", True)):
        split, analysed = stage_split(args.video, every_frame, crops=args.crops, size=args.model_size)
        results["stages"][name] = dict(split, analyses=analysed)
        print(f"stages on one thread, {name}: {analysed} analyses; " + ", ".join(f"{k} {v * 1000:.1f} ms/s" for k, v in split.items()))
        network = sum(v for k, v in split.items() if k in NETWORK_STAGES)
        for pi, (factor, extra) in PI_FACTORS.items():
            low, high = sum(split.values()) * factor, (sum(split.values()) + network * (extra - 1)) * factor
            span = f"{low:.2f}" if high - low < 0.005 else f"{low:.2f}-{high:.2f}"
            print(f"    estimate for a {pi}: {span} of one core (an estimate: x{factor}"
                  + (f", network stages x{extra} more" if extra > 1 else "") + ")")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
