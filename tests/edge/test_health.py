"""The device's own figures (deploy.health.Health, a frame hook) on real runs of the camera loop
over a real video, and the health gate's verdicts (judge) on figures built to cross each threshold."""

import numpy as np
import pytest

from conftest import read_frames
from fer_edge.deploy.health import SAMPLES, Health, emotion_shift, judge
from fer_edge.kiosk.pipeline import Pipeline
from fer_edge.kiosk.sessions import SessionTracker
from fer_edge.model.classify import EmotionClassifier
from fer_edge.vision.analyzer import FaceAnalyzer
from fer_edge.vision.capture import Frame
from fer_edge.vision.detect import make_detector
from fer_edge.vision.track import Tracker

GATE = {"seconds": 10, "max_seconds": 30, "min_faces": 20, "max_fps_drop": 0.3, "max_faces_drop": 0.5,
        "max_errors": 0, "max_emotion_shift": 0.5, "min_spread_ratio": 0.25}


@pytest.fixture(scope="module")
def face_frames(photos):
    return read_frames(photos / "single_face.mp4")[:60]


class Clock:
    """The media time of the frame being processed, as the hook's clock: figures per video second."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(frames, health, clock, start=0.0, classifier=None, swap_at=None, on_error=None):
    analyzer = FaceAnalyzer(make_detector("auto"), EmotionClassifier())
    loop = Pipeline(analyzer, Tracker(), [], [health], device_id="kiosk", log_interval=0.0,
                    sessions=SessionTracker(device_id="kiosk"))
    for index, image in enumerate(frames):
        if index == swap_at:
            loop.request_swap(classifier, on_error=on_error)
        clock.now = start + index / 30.0
        loop.process(Frame(index, clock.now, image))
    loop.close()
    return loop


def test_figures_of_a_real_run(face_frames):
    clock = Clock()
    health = Health(clock=clock)
    loop = run(face_frames, health, clock)
    figures = health.figures(0.0, 2.0)
    assert figures["frames"] == len(face_frames) == loop.stats.frames
    assert figures["faces"] == loop.stats.faces == len(face_frames) and figures["faces_per_frame"] == 1.0
    assert figures["fps"] == pytest.approx(30.0) and figures["seconds"] == 2.0 and figures["errors"] == 0
    assert 0.14 < figures["confidence_mean"] <= 1.0 and figures["confidence_spread"] >= 0.0
    assert set(figures["emotions"]) <= set(EmotionClassifier().labels)
    assert sum(figures["emotions"].values()) == pytest.approx(1.0, abs=1e-3)
    half = health.figures(0.0, 1.0)
    assert half["frames"] == 31 and half["fps"] == pytest.approx(31.0)
    faces = health.recent_faces()
    assert 1 <= len(faces) <= SAMPLES and all(f.shape == (48, 48) and f.dtype == np.uint8 for f in faces)
    assert health.figures(5.0, 6.0)["faces"] == 0 and health.figures(5.0, 6.0)["confidence_mean"] is None


def test_the_window_forgets_by_time_and_by_size(face_frames):
    clock = Clock()
    health = Health(window_seconds=1.0, clock=clock)
    run(face_frames, health, clock)
    assert min(t for t, _ in health.records) >= clock.now - 1.0 and len(health.records) == 31
    small = Health(max_records=10, clock=clock)
    run(face_frames[:20], small, clock)
    assert len(small.records) == 10 and small.records.maxlen == 10


def test_a_failing_model_on_trial_is_counted_and_the_loop_goes_on(face_frames):
    clock = Clock()
    health = Health(clock=clock)
    broken = EmotionClassifier()
    broken.input = dict(broken.input, index=10_000)   # LiteRT itself refuses every call: a model that fails to run
    loop = run(face_frames, health, clock, classifier=broken, swap_at=30, on_error=health.error)
    assert loop.stats.frames == len(face_frames), "no frame lost"
    after = health.figures(1.0, 2.0)
    assert after["errors"] == 30 and after["faces"] == 0 and health.figures(0.0, 0.99)["errors"] == 0
    assert judge(health.figures(0.0, 0.99), after, dict(GATE, seconds=0))[0] == "rolled back"
    with pytest.raises(RuntimeError):   # without on_error (the configured model) an error still stops the run
        run(face_frames[:3], Health(clock=clock), clock, classifier=broken, swap_at=1)


def figures(fps=10.0, faces=100, per_frame=1.0, errors=0, spread=0.2, emotions=None, seconds=20.0):
    return {"seconds": seconds, "frames": int(fps * seconds), "fps": fps, "faces": faces,
            "faces_per_frame": per_frame, "errors": errors, "confidence_mean": 0.6, "confidence_spread": spread,
            "emotions": emotions or {"happy": 0.5, "neutral": 0.3, "sad": 0.2}}


@pytest.mark.parametrize("after, verdict, words", [
    (figures(), "kept", "100 faces in 20 s"),
    (figures(fps=7.5), "kept", "7.5 frames/s"),
    (figures(seconds=5), "wait", "5 of 10 s"),
    (figures(errors=1, seconds=1), "rolled back", "1 classifier errors during the trial (at most 0)"),
    (figures(fps=6.9), "rolled back", "frames/s fell from 10.0 to 6.9 (more than 30%)"),
    (figures(per_frame=0.4), "rolled back", "faces per frame fell from 1.00 to 0.40 (more than 50%)"),
    (figures(emotions={"neutral": 1.0}), "rolled back", "emotions shifted by 0.70 (at most 0.5)"),
    (figures(spread=0.004), "rolled back", "confidence spread fell from 0.200 to 0.004"),
    (figures(spread=0.04), "kept", "spread 0.040 (before 0.200)"),
    (figures(faces=5), "wait", "5 of 20 faces"),
    (figures(faces=5, seconds=30), "unjudged", "too few faces to judge in 30 s (before 100, after 5; needs 20)"),
])
def test_the_gate_at_each_threshold(after, verdict, words):
    got, reason = judge(figures(), after, GATE)
    assert got == verdict and words in reason and "\n" not in reason


def test_too_few_faces_before_the_swap_cannot_be_judged():
    assert judge(figures(faces=3), figures(), GATE)[0] == "wait"
    assert judge(figures(faces=3), figures(seconds=30), GATE) == (
        "unjudged", "too few faces to judge in 30 s (before 3, after 100; needs 20)")


def test_emotions_are_compared_by_label_name_across_label_sets():
    seven = {"angry": 0.1, "disgust": 0.1, "happy": 0.5, "neutral": 0.3}
    six = {"angry": 0.15, "happy": 0.5, "neutral": 0.35}   # no disgust: its faces went elsewhere
    assert emotion_shift(seven, six) == pytest.approx(0.1)
    assert emotion_shift(seven, seven) == 0.0 and emotion_shift({"happy": 1.0}, {"sad": 1.0}) == 1.0
    assert judge(figures(emotions=seven), figures(emotions=six), GATE)[0] == "kept"
