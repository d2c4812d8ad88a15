"""Helpers of .ci/arm64, run with fer-edge's Python on x86 and in the arm64 userland.

  crops VIDEO N OUT.npy     the 48x48 crops of the largest face in the first N frames (x86)
  classify CROPS OUT.npy    the shipped model's probabilities for those crops (both sides)
  compare X86 ARM X86P ARMP  frame labels, sessions and crop probabilities; one summary line
"""

import json
import sys

import numpy as np

NEAR_TIE = 0.05  # a frame's labels may differ only where its top two answers are this close
MAX_BOX_SHIFT = 0.03  # of the face's width: BlazeFace's float kernels differ by a fraction of a pixel
MAX_PROB_DIFF = 1e-4


def crops(video, count, out):
    import cv2

    from fer_edge.vision.detect import make_detector
    from fer_edge.model.preprocess import crop_detected

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
    from fer_edge.model.classify import EmotionClassifier

    np.save(out, EmotionClassifier().predict(np.load(crops_path)))


def read_run(path):
    """Per-frame event of the first face, and the sessions, from `fer-edge run --json` output."""
    events, sessions = {}, []
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if "session" in event:
                sessions.append(event["session"])
            else:
                events.setdefault(event["frame"], event)
    return events, sessions


def _near_tie(a, b):
    """Whether either side's answer is within NEAR_TIE of the label the other side gave."""
    gap = lambda e, other: e["probs"][e["label"]] - e["probs"][other["label"]]  # noqa: E731
    return min(gap(a, b), gap(b, a)) <= NEAR_TIE


def _box_shift(a, b):
    return max(abs(a["box"][k] - b["box"][k]) for k in ("x", "y", "w", "h")) / a["box"]["w"]


def compare(x86_run, arm_run, x86_probs, arm_probs):
    x86_events, x86_sessions = read_run(x86_run)
    arm_events, arm_sessions = read_run(arm_run)
    frames = sorted(set(x86_events) | set(arm_events))
    both = [f for f in frames if f in x86_events and f in arm_events]
    # Between two looks a face is carried over; a close call that falls on different frames on
    # the two sides makes one side look where the other carries over. Compare where both looked.
    looked = [f for f in both if x86_events[f].get("analysed", True) and arm_events[f].get("analysed", True)]
    differ = [f for f in looked if x86_events[f]["label"] != arm_events[f]["label"]]
    not_ties = [f for f in differ if not _near_tie(x86_events[f], arm_events[f])]
    shift = max((_box_shift(x86_events[f], arm_events[f]) for f in looked), default=1.0)
    summary = lambda sessions: [(s["dominant"], s["exit_emotion"]) for s in sessions]  # noqa: E731
    same_sessions = bool(x86_sessions) and summary(x86_sessions) == summary(arm_sessions)
    diff = float(np.abs(np.load(x86_probs) - np.load(arm_probs)).max())
    ok = (len(both) == len(frames) > 0 and looked and not not_ties and shift <= MAX_BOX_SHIFT and same_sessions
          and diff <= MAX_PROB_DIFF)
    print(f"arm64 (cortex-a72) vs x86: {'PASS' if ok else 'FAIL'}: a face on {len(both)}/{len(frames)} frames on both; "
          f"on the {len(looked)} frames both analysed, boxes within {shift:.1%} of the face (need <= "
          f"{MAX_BOX_SHIFT:.0%}) and labels agree on {len(looked) - len(differ)}/{len(looked)}, {len(differ)} differ, {len(not_ties)} of them not a near tie "
          f"(top two within {NEAR_TIE:g} on one side; need 0){' ' + str(not_ties) if not_ties else ''}; "
          f"sessions (dominant, exit) x86 {summary(x86_sessions)} arm64 {summary(arm_sessions)}; "
          f"classifier on {len(np.load(x86_probs))} identical crops: max |dp| {diff:.2e} (need <= {MAX_PROB_DIFF:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    sys.exit({"crops": crops, "classify": classify, "compare": compare}[command](*args) or 0)
