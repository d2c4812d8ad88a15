"""Helpers of .ci/arm64, run with fer-edge's Python on x86 and in the arm64 userland.

  crops VIDEO N OUT.npy     the 48x48 crops of the largest face in the first N frames (x86)
  classify CROPS OUT.npy    the shipped model's probabilities for those crops (both sides)
  compare X86 ARM X86P ARMP  frame labels, sessions and crop probabilities; one summary line
"""

import json
import sys

import numpy as np

MIN_FRAME_AGREEMENT = 0.98
MAX_PROB_DIFF = 1e-4


def crops(video, count, out):
    import cv2

    from fer_edge.detect import make_detector
    from fer_edge.preprocess import crop_detected

    detector, capture, faces = make_detector("blazeface"), cv2.VideoCapture(video), []
    for _ in range(int(count)):
        ok, frame = capture.read()
        if not ok:
            break
        boxes = detector.detect(frame)
        if boxes:
            faces.append(crop_detected(frame, max(boxes, key=lambda b: b[2] * b[3])))
    np.save(out, np.stack(faces))


def classify(crops_path, out):
    from fer_edge.classify import EmotionClassifier

    np.save(out, EmotionClassifier().predict(np.load(crops_path)))


def read_run(path):
    """Per-frame label of the first face, and the sessions, from `fer-edge run --json` output."""
    labels, sessions = {}, []
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if "session" in event:
                sessions.append(event["session"])
            else:
                labels.setdefault(event["frame"], event["label"])
    return labels, sessions


def compare(x86_run, arm_run, x86_probs, arm_probs):
    x86_labels, x86_sessions = read_run(x86_run)
    arm_labels, arm_sessions = read_run(arm_run)
    frames = sorted(set(x86_labels) | set(arm_labels))
    agree = sum(x86_labels.get(f) == arm_labels.get(f) for f in frames)
    share = agree / len(frames) if frames else 0.0
    summary = lambda sessions: [(s["dominant"], s["exit_emotion"]) for s in sessions]  # noqa: E731
    same_sessions = bool(x86_sessions) and summary(x86_sessions) == summary(arm_sessions)
    diff = float(np.abs(np.load(x86_probs) - np.load(arm_probs)).max())
    ok = share >= MIN_FRAME_AGREEMENT and same_sessions and diff <= MAX_PROB_DIFF
    print(f"arm64 (cortex-a72) vs x86: {'PASS' if ok else 'FAIL'}: labels agree on {agree}/{len(frames)} frames "
          f"({share:.1%}, need {MIN_FRAME_AGREEMENT:.0%}); sessions (dominant, exit) x86 {summary(x86_sessions)} "
          f"arm64 {summary(arm_sessions)}; classifier on {len(np.load(x86_probs))} identical crops: "
          f"max |dp| {diff:.2e} (need <= {MAX_PROB_DIFF:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    sys.exit({"crops": crops, "classify": classify, "compare": compare}[command](*args) or 0)
