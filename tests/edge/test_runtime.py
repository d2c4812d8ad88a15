"""fer-edge run on real photos and videos: detection, tracking, logging, annotation, signals."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_cli
from fer_edge.vision.detect import make_detector
from fer_edge.vision.running_mode import RunningMode

FRONTAL = {"astronaut.png": 1, "single_face.jpg": 1, "two_people.jpg": 2, "multi_face.jpg": 5}


def test_device_side_never_imports_tensorflow():
    code = ("import sys, fer_edge.cli, fer_edge.app, fer_edge.kiosk.pipeline, fer_edge.model.classify, fer_edge.vision.detect, fer_edge.vision.capture, "
            "fer_edge.tools.bench, fer_edge.model.datasets; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Nor does any code path further in (no fallback that would load it either).
    import fer_edge

    importers = [path.name for path in Path(fer_edge.__file__).parent.rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+tensorflow\b", path.read_text(), re.MULTILINE)]
    assert importers == []


@pytest.mark.parametrize("detector", ["auto", "haar"])
def test_all_frontal_faces_found_without_false_ones(photos, detector):
    det = make_detector(detector, mode=RunningMode.STILLS)
    for name, expected in FRONTAL.items():
        boxes = det.detect(cv2.imread(str(photos / name)))
        assert len(boxes) == expected, (det.name, name, boxes)


def test_run_over_a_video_logs_tracked_faces(photos, model_path, tmp_path):
    db = tmp_path / "log.db"
    annotated = tmp_path / "out.mp4"
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path,
                     "--db", db, "--json", "--log-interval", "0.5", "--annotate", annotated)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = [line for line in lines if "track" in line]
    sessions = [line["session"] for line in lines if "session" in line]
    assert events and {e["track"] for e in events} == {1}, "one person, one stable track id"
    assert len(sessions) == 1 and sessions[0]["frames"] == 72 and sessions[0]["tracks"] == [1]
    assert set(events[0]) >= {"ts", "device", "track", "label", "confidence", "probs", "box"}
    assert abs(sum(events[0]["probs"].values()) - 1) < 1e-3
    rows = sqlite3.connect(db).execute("SELECT frame, track, label, p_happy FROM emotions ORDER BY id").fetchall()
    assert len(rows) == len(events) and rows[0][1] == 1
    # 72 frames at 30 fps = 2.4 s, one update per 0.5 s of media time
    assert 4 <= len(rows) <= 6
    run = sqlite3.connect(db).execute("SELECT frames, faces, ended FROM runs").fetchone()
    assert run[0] == 72 and run[1] >= 70 and run[2] is not None
    video = cv2.VideoCapture(str(annotated))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    ok, frame = video.read()
    assert ok and frame.shape == (360, 640, 3)
    assert "72 frames" in result.stderr and "Traceback" not in result.stderr
    assert all(line.startswith("fer-edge: ") for line in result.stderr.splitlines()), result.stderr


def test_runtime_notice_is_dropped_and_other_native_output_kept(model_path):
    """The runtime's XNNPACK notice stays off stderr; anything else written to descriptor 2 passes."""
    real = f"from fer_edge.model.classify import EmotionClassifier; EmotionClassifier({str(model_path)!r})"
    result = subprocess.run([sys.executable, "-c", real], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    other = ("import os, fer_edge.model.litert as litert\n"
             "class WritesToDescriptor2:\n"
             "    def allocate_tensors(self):\n"
             "        os.write(2, litert.XNNPACK_NOTICE + b'\\nWARNING: kept\\n')\n"
             "litert.allocate_tensors(WritesToDescriptor2())\n")
    result = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "WARNING: kept\n", result.stderr


def photo_folder(tmp_path, photos, names):
    """A folder holding (links to) these real photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(photos / name)
    return folder


def test_photos_folder_counts_every_face(photos, model_path, tmp_path):
    folder = photo_folder(tmp_path, photos, FRONTAL)
    result = run_cli("fer-edge", "run", "--source", folder, "--model", model_path, "--no-db", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 9 and len({e["track"] for e in events}) == 9


def test_threads_follow_the_cpus_and_never_change_the_answer(photos, model_path, tmp_path):
    """"auto" threads: one per CPU the process may use (here pinned to one), at most 4."""
    folder = photo_folder(tmp_path, photos, sorted(FRONTAL)[:3])
    command = ("fer-edge", "run", "--source", folder, "--model", model_path, "--no-db", "--json")
    pinned = run_cli(*command, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert pinned.returncode == 0 and ", 1 thread, " in pinned.stderr, pinned.stderr
    free = run_cli(*command)
    cpus = min(len(os.sched_getaffinity(0)), 4)
    assert f", {cpus} thread{'' if cpus == 1 else 's'}, " in free.stderr
    two = run_cli(*command, "--threads", "2")
    assert ", 2 threads, " in two.stderr
    answers = [[(e["label"], e["probs"], e["box"]) for e in map(json.loads, r.stdout.splitlines())] for r in (pinned, two)]
    assert len(answers[0]) >= 3 and answers[0] == answers[1]


def test_saved_crops_belong_to_their_tracks(photos, model_path, tmp_path):
    """Each track's saved crops, classified again and smoothed as the tracker does, give
    exactly what was logged for it, also when the detector lists the faces in another order
    than the tracks (the two halves of a photo of two people swap places)."""
    from fer_edge.model.classify import EmotionClassifier
    from fer_edge.vision.track import Tracker

    image = cv2.imread(str(photos / "two_people.jpg"))
    half = image.shape[1] // 2
    swapped = np.hstack([image[:, half:], image[:, :half]])
    video = tmp_path / "swap.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (half * 2, image.shape[0]))
    for frame in [image[:, :half * 2]] * 3 + [swapped] * 3:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    crops = tmp_path / "crops"
    result = run_cli("fer-edge", "run", "--source", video, "--model", model_path, "--no-db", "--json",
                     "--log-interval", "0", "--save-crops", crops, "--every-frame")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 12 and {e["track"] for e in events} == {1, 2}
    classifier, alpha, smoothed = EmotionClassifier(str(model_path)), Tracker().alpha, {}
    for e in events:
        crop = cv2.imread(str(crops / f"f{e['frame']:07d}_t{e['track']}.png"), cv2.IMREAD_GRAYSCALE)
        probs = classifier.predict(crop)[0].astype(np.float64)
        before = smoothed.get(e["track"])
        smoothed[e["track"]] = probs if before is None else (1 - alpha) * before + alpha * probs
        logged = np.array(list(e["probs"].values()))
        assert np.abs(smoothed[e["track"]] - logged).max() <= 6e-5, (e["frame"], e["track"])


def test_sigterm_flushes_the_log_and_prints_a_summary(photos, model_path, tmp_path):
    db = tmp_path / "log.db"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "fer-edge"), "run", "--source", str(photos / "WolfgangLanger_Pexels.mp4"),
         "--model", str(model_path), "--db", str(db), "--json", "--realtime", "--loop", "--log-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    assert json.loads(first)["track"] >= 1
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped:" in err and "Traceback" not in err
    printed = 1 + len([line for line in out.splitlines() if '"session"' not in line[:12]])
    stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM emotions").fetchone()[0]
    assert stored == printed, "every update shown was also committed"


def test_bad_inputs_are_one_line_errors(photos, model_path, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((photos / "single_face.mp4").read_bytes()[:3000])
    cases = [
        (["--source", tmp_path / "missing.mp4"], "no such file"),
        (["--source", broken], "cannot open as video"),
        (["--camera", "front"], "expected a camera index"),
        (["--source", photos / "single_face.mp4", "--model", tmp_path / "none.tflite"], "cannot read model"),
    ]
    for args, message in cases:
        extra = [] if "--model" in args else ["--model", model_path]
        result = run_cli("fer-edge", "run", *args, *extra, "--no-db")
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_detect_reports_missed_photos(wild, model_path):
    result = run_cli("fer-edge", "eval", "--model", model_path, "--data", wild, "--detect", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["no_face"] + report["n"] == 1915
    assert report["no_face"] < 300


@pytest.mark.slow
def test_eval_judges_an_ensemble(portraits, small_csv, model_path, six_class_model):
    """Repeated --model: the mean of the models' log-probabilities. A model with itself reads
    exactly as alone; models of other labels are refused in one line."""
    args = ["--data", small_csv, "--usage", "PublicTest", "--data", portraits, "--detect", "--threads", "2", "--json"]
    alone = run_cli("fer-edge", "eval", "--model", model_path, *args)
    twice = run_cli("fer-edge", "eval", "--model", model_path, "--model", model_path, *args)
    assert alone.returncode == 0 and twice.returncode == 0, alone.stderr + twice.stderr
    alone, twice = json.loads(alone.stdout), json.loads(twice.stdout)
    assert twice["model_name"] == f"{Path(model_path).name} + {Path(model_path).name}"
    for one, pair in zip(alone["sets"], twice["sets"]):
        assert pair["confusion"] == one["confusion"] and pair["no_face"] == one["no_face"]
        assert pair["ece"] == pytest.approx(one["ece"], abs=1e-6)
    refused = run_cli("fer-edge", "eval", "--model", model_path, "--model", six_class_model, *args)
    assert refused.returncode != 0 and "an ensemble needs the same labels" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_eval_tables_several_sets(wild, portraits, small_csv, model_path):
    """The field benchmark: FER2013 splits and both photo sets in one run, their means."""
    args = ["--model", model_path, "--data", small_csv, "--usage", "PublicTest", "--usage", "PrivateTest",
            "--data", wild, "--data", portraits, "--detect", "--threads", "2"]
    result = run_cli("fer-edge", "eval", *args, "--json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    sets = {(r["data"].rsplit("/", 1)[-1], r["usage"]): r for r in table["sets"]}
    assert list(sets) == [("fer_small.csv.gz", "PublicTest"), ("fer_small.csv.gz", "PrivateTest"),
                          ("wild.tar.gz", None), ("portraits-dev.tar.gz", None)]
    assert sets[("wild.tar.gz", None)]["n"] + sets[("wild.tar.gz", None)]["no_face"] == 1915
    assert sets[("portraits-dev.tar.gz", None)]["n"] + sets[("portraits-dev.tar.gz", None)]["no_face"] == 628
    assert not sets[("fer_small.csv.gz", "PublicTest")]["detected"] and sets[("wild.tar.gz", None)]["detected"]
    photo = [sets[("wild.tar.gz", None)], sets[("portraits-dev.tar.gz", None)]]
    assert table["field_mean"]["end_to_end_accuracy"] == pytest.approx(np.mean([r["end_to_end_accuracy"] for r in photo]))
    assert table["field_mean"]["macro_f1"] == pytest.approx(np.mean([r["macro_f1"] for r in photo]))
    assert table["field_mean"]["valence_accuracy"] == pytest.approx(np.mean([r["valence_accuracy"] for r in photo]))
    for r in photo:   # the visitor's side is read at least as often as the exact emotion
        assert r["end_to_end_accuracy"] <= r["valence_accuracy"] <= 1 and set(r["valence_recall"]) == {"negative", "neutral", "positive"}
    chosen = [sets[("fer_small.csv.gz", "PublicTest")]] + photo
    assert table["selection"]["end_to_end_accuracy"] == pytest.approx(np.mean([r["end_to_end_accuracy"] for r in chosen]))
    text = run_cli("fer-edge", "eval", *args)
    assert text.returncode == 0, text.stderr
    assert "portraits-dev.tar.gz" in text.stdout and "mean over the photo sets" in text.stdout and "valence" in text.stdout
