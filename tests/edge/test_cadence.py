"""The default cadence (6 analyses a second, more on close calls) instead of every frame
changes nothing a user sees: the same visits (count, dominant and exit emotions), the same
per-frame labels of tracked faces on at least 97 % of frames, and a face that enters is
found within 1/analyse_fps = 1/6 s. Real videos, the real
model, whole `fer-edge run` processes."""

import json

import numpy as np
import pytest

from conftest import read_frames, run_cli

pytestmark = pytest.mark.slow

FOUND_WITHIN_SECONDS = 1 / 6 + 1e-6  # 1/analyse_fps: what docs/performance.md states


def crowd_video(photos, folder):
    """A made-up kiosk scene at 24 frames/s: two real faces (single_face.mp4 and the Pexels
    video) enter and leave on either half of the frame, together and apart, four visits."""
    import cv2

    left = read_frames(photos / "single_face.mp4")
    right = read_frames(photos / "WolfgangLanger_Pexels.mp4")
    height, width = 360, 960
    fit = lambda frame: cv2.resize(frame, (width // 2, height))  # noqa: E731
    empty = np.full((height, width // 2, 3), 40, np.uint8)
    fps = 24
    # Entries fall between the moments the default cadence searches (6 times a second).
    schedule = [(0.0, 3.0, "left"), (1.55, 6.0, "right"), (7.63, 10.5, "left"), (9.1, 12.0, "right")]
    path = folder / "crowd.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    entries = []
    for i in range(int(14.0 * fps)):
        t = i / fps
        halves = []
        for side, clip in (("left", left), ("right", right)):
            on = any(start <= t < end and s == side for start, end, s in schedule)
            halves.append(fit(clip[i % len(clip)]) if on else empty)
        writer.write(np.hstack(halves))
    writer.release()
    for start, _, side in schedule:
        entries.append((int(np.ceil(start * fps)), side))
    return path, fps, entries


def run_json(video, model_path, *flags):
    """{(frame, side of the frame): label} of every tracked face, the visits, and how many of
    the face-frames were looked at (the others carried over)."""
    result = run_cli("fer-edge", "run", "--source", video, "--model", model_path, "--no-db", "--json",
                     "--log-interval", "0", "--session-min", "1", "--session-gap", "1", *flags)
    assert result.returncode == 0, result.stderr
    labels, sessions, looked = {}, [], 0
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if "session" in event:
            s = event["session"]
            sessions.append((s["dominant"], s["exit_emotion"]))
        else:
            box = event["box"]
            side = "left" if box["x"] + box["w"] / 2 < 480 else "right"
            labels[(event["frame"], side)] = event["label"]
            looked += event["analysed"]
    return labels, sessions, looked


def faces_at(labels, frame):
    return sum(1 for f, _ in labels if f == frame)


def compare(video, model_path):
    every, every_sessions, every_looked = run_json(video, model_path, "--every-frame")
    cadence, cadence_sessions, cadence_looked = run_json(video, model_path)
    assert every_looked == len(every) and 0 < cadence_looked < len(cadence), "the events say which frames were looked at"
    both = sorted(set(every) & set(cadence))
    agreement = sum(every[k] == cadence[k] for k in both) / len(both)
    print(f"{video.name}: {len(both)} face-frames tracked both ways, labels agree on {agreement:.1%}; "
          f"visits every frame {every_sessions}, default cadence {cadence_sessions}")
    assert every_sessions == cadence_sessions
    assert agreement >= 0.97
    return every, cadence


def test_the_test_videos_read_the_same(photos, model_path):
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
        compare(photos / name, model_path)


def test_faces_entering_and_leaving_read_the_same_and_are_found_in_time(photos, model_path, tmp_path):
    video, fps, entries = crowd_video(photos, tmp_path)
    every, cadence = compare(video, model_path)
    for frame, side in entries:
        found = next(f for f in range(frame, frame + 2 * fps) if (f, side) in cadence)
        every_found = next(f for f in range(frame, frame + 2 * fps) if (f, side) in every)
        delay = (found - frame) / fps
        print(f"the {side} face entering at frame {frame}: found after {delay:.3f} s "
              f"(every frame: {(every_found - frame) / fps:.3f} s)")
        assert delay <= FOUND_WITHIN_SECONDS
