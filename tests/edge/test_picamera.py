"""`--camera pi` through a stand-in for picamera2 that follows its documented array layouts."""

import pytest
import json
import sys
from pathlib import Path

import cv2

from conftest import read_frames, run_cli

STAND_INS = Path(__file__).resolve().parents[1] / "stand_ins"
MAIN = {"size": (640, 480), "format": "RGB888"}  # what PiCameraSource asks for


def _run_lines(result):
    labels, boxes, sessions = {}, {}, []
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if "session" in event:
            sessions.append((event["session"]["dominant"], event["session"]["exit_emotion"]))
        else:
            labels[event["frame"]], boxes[event["frame"]] = event["label"], event["box"]
    return labels, boxes, sessions


def _iou(a, b):
    ax, ay, aw, ah = (a[k] for k in "xywh")
    bx, by, bw, bh = (b[k] for k in "xywh")
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.mark.slow
def test_camera_pi_logs_the_same_emotions_as_the_same_frames_from_a_file(photos, model_path, tmp_path):
    video = photos / "single_face.mp4"
    sys.path.insert(0, str(STAND_INS))
    try:
        from picamera2 import stream_array
    finally:
        sys.path.remove(str(STAND_INS))
    # The main stream's frames, losslessly, for the --source run.
    main_frames = [stream_array(frame, MAIN) for frame in read_frames(video)]
    same_frames = tmp_path / "main.avi"
    writer = cv2.VideoWriter(str(same_frames), cv2.VideoWriter_fourcc(*"FFV1"), 30, MAIN["size"])
    for frame in main_frames:
        writer.write(frame)
    writer.release()
    calls = tmp_path / "calls.log"
    # Every frame is analysed both ways: a live camera's clock and a file's frame times pick different frames
    # for the default cadence, and this test compares the capture paths, not the cadence.
    common = ["--max-frames", len(main_frames), "--detector", "blazeface", "--model", model_path, "--no-db", "--json",
              "--log-interval", "0", "--every-frame"]
    pi = run_cli("fer-edge", "run", "--camera", "pi", *common, extra_env={
        "PYTHONPATH": str(STAND_INS), "PICAMERA2_STAND_IN_VIDEO": str(video), "PICAMERA2_STAND_IN_LOG": str(calls)})
    from_file = run_cli("fer-edge", "run", "--source", same_frames, *common)
    assert pi.returncode == 0 and from_file.returncode == 0, pi.stderr + from_file.stderr
    assert f"{len(main_frames)} frames" in pi.stderr and "Traceback" not in pi.stderr

    made = calls.read_text().split("\n")
    assert made.count("make_array main") >= len(main_frames) and made.count("make_array lores") >= len(main_frames)
    pi_labels, pi_boxes, pi_sessions = _run_lines(pi)
    file_labels, file_boxes, file_sessions = _run_lines(from_file)
    assert len(pi_labels) == len(file_labels) == len(main_frames), "a face in every frame, both ways"
    # Detection ran on the 320x240 lores Y plane; its boxes came back in main-stream pixels.
    overlaps = [_iou(pi_boxes[f], file_boxes[f]) for f in file_boxes]
    assert min(overlaps) > 0.8, min(overlaps)
    agree = sum(pi_labels[f] == file_labels[f] for f in file_labels) / len(file_labels)
    print(f"--camera pi vs --source on the same {len(file_labels)} frames: labels agree on {agree:.1%}, "
          f"box IoU min {min(overlaps):.3f}, sessions {pi_sessions} vs {file_sessions}")
    assert agree >= 0.95, (agree, pi_labels, file_labels)
    assert pi_sessions == file_sessions and len(pi_sessions) == 1
