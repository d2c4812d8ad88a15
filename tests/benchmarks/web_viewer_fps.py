"""Benchmark: camera-loop frames/s of `fer-edge serve` over a video with no viewer and with
one headless Chromium watching the live view, interleaved, medians of --repeats runs.

On a real device the browser runs on another machine. Here it shares the 2 cores, so with
--pin (the default) fer-edge runs on core 0 and Chromium on core 1: what is left to compare
is what serving the viewer costs the fer-edge process itself. --no-pin shows the shared case.

    python tests/benchmarks/web_viewer_fps.py [--repeats 3] [--video PATH] [--no-pin] [--realtime --frames 480]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import free_port  # noqa: E402
VIDEO = ROOT.parent / "shared" / "data" / "photos" / "WolfgangLanger_Pexels.mp4"


def browser(pin, folder):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = shutil.which("chromedriver")
    if pin:  # the driver and every Chromium process it starts inherit core 1
        wrapper = Path(folder) / "chromedriver-core1"
        wrapper.write_text(f"#!/bin/sh\nexec taskset -c 1 {driver} \"$@\"\n")
        wrapper.chmod(0o755)
        driver = str(wrapper)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def count_viewers(port, seen):
    """Record the live view's viewer count while the run goes on (proves the browser watched)."""
    for _ in range(10):
        time.sleep(0.5)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=1) as r:
                seen.append(json.load(r)["viewers"])
        except OSError:
            return


def one_run(video, loops, watch, driver, pin, seen, realtime=False):
    port = free_port()
    # --loop with --max-frames: a fixed amount of work, long enough for the viewer to matter.
    command = (["taskset", "-c", "0"] if pin else []) + [str(Path(sys.executable).parent / "fer-edge"), "serve", "--source", str(video), "--loop",
               "--max-frames", str(loops), "--no-db", "--quiet", "--web", f"127.0.0.1:{port}"] + (["--realtime"] if realtime else [])
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    if watch:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        threading.Thread(target=lambda: driver.get(f"http://127.0.0.1:{port}/"), daemon=True).start()
        threading.Thread(target=count_viewers, args=(port, seen), daemon=True).start()
    _, err = process.communicate()
    line = [text for text in err.splitlines() if "frames/s" in text][-1]
    return float(line.split("(")[1].split(" frames/s")[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=2400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--realtime", action="store_true", help="pace the video at its own frame rate, like a camera")
    args = parser.parse_args()
    import tempfile

    folder = tempfile.mkdtemp()
    driver = browser(args.pin, folder)
    alone, watched, viewers = [], [], []
    try:
        for _ in range(args.repeats):
            alone.append(one_run(args.video, args.frames, False, driver, args.pin, [], args.realtime))
            seen = []
            watched.append(one_run(args.video, args.frames, True, driver, args.pin, seen, args.realtime))
            viewers.append(max(seen, default=0))
            driver.get("about:blank")
    finally:
        driver.quit()
    a, w = statistics.median(alone), statistics.median(watched)
    where = "fer-edge on core 0, Chromium on core 1" if args.pin else "fer-edge and Chromium sharing both cores"
    pace = "paced at the video's frame rate" if args.realtime else "as fast as it goes"
    print(f"camera loop over {Path(args.video).name} ({pace}), {args.frames} frames, median of {args.repeats} ({where}):")
    print(f"  no viewer          {a:.1f} frames/s   {alone}")
    print(f"  one browser        {w:.1f} frames/s   {watched}  (viewers seen: {viewers})")
    print(f"  ratio              {w / a:.3f}")


if __name__ == "__main__":
    main()
