"""Visitor sessions on recorded track sequences: enter, leave, gaps, flicker."""

from types import SimpleNamespace

import numpy as np
import pytest

from fer_edge.core.labels import LABELS
from fer_edge.kiosk.sessions import SessionTracker, satisfaction
from conftest import run_cli


def onehot(label, p=0.9):
    probs = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    probs[LABELS.index(label)] = p
    return probs


def track(track_id, label, box=(100, 100, 80, 80)):
    return SimpleNamespace(id=track_id, box=box, probs=onehot(label))


def play(tracker, script, fps=10):
    """script: list of (seconds, [tracks]) segments played at fps; returns finished sessions."""
    finished, t = [], 0.0
    for seconds, tracks in script:
        for _ in range(int(seconds * fps)):
            finished += tracker.update(t, tracks)
            t += 1.0 / fps
    return finished + tracker.flush()


def test_a_visit_with_its_exit_emotion_and_score():
    sessions = play(SessionTracker(exit_seconds=2), [(5, [track(1, "neutral")]), (3, [track(1, "happy")]), (5, [])])
    assert len(sessions) == 1
    s = sessions[0]
    assert s.dominant == "neutral" and s.exit_emotion == "happy"
    assert 7.5 <= s.duration <= 8.0 and s.frames == 80
    assert s.shares["neutral"] == pytest.approx(5 / 8) and s.satisfaction > 80


def test_a_glimpse_is_not_a_visit():
    assert play(SessionTracker(min_seconds=1.0), [(0.5, [track(1, "happy")]), (5, [])]) == []


def test_turned_head_new_track_same_place_is_the_same_visit():
    sessions = play(SessionTracker(gap_seconds=3), [(4, [track(1, "sad")]), (1.5, []), (4, [track(2, "sad")]), (5, [])])
    assert len(sessions) == 1 and sessions[0].tracks == [1, 2]


def test_a_long_gap_makes_two_visits():
    sessions = play(SessionTracker(gap_seconds=2), [(3, [track(1, "sad")]), (4, []), (3, [track(2, "happy")]), (5, [])])
    assert [s.exit_emotion for s in sessions] == ["sad", "happy"]


def test_two_people_side_by_side_are_two_visits():
    left, right = (50, 100, 80, 80), (400, 100, 80, 80)
    sessions = play(SessionTracker(), [(4, [track(1, "happy", left), track(2, "angry", right)]), (5, [])])
    assert sorted(s.exit_emotion for s in sessions) == ["angry", "happy"]


def test_flicker_does_not_split_a_visit():
    flicker = [(0.2, [track(1, "neutral")]), (0.1, [])] * 20
    sessions = play(SessionTracker(), flicker + [(5, [])])
    assert len(sessions) == 1


def test_score_is_configurable_and_bounded():
    assert satisfaction(onehot("happy", 1.0)) == 100.0
    assert satisfaction(onehot("angry", 1.0)) == 0.0
    assert satisfaction(onehot("neutral", 1.0)) == 50.0
    tracker = SessionTracker(valence={"neutral": 1.0})
    s = play(tracker, [(3, [track(1, "neutral")]), (5, [])])[0]
    assert s.satisfaction > 90


def test_a_face_that_stays_for_hours_keeps_only_the_exit_window():
    # A poster or a visitor who never leaves: a months-long service must not keep every frame.
    tracker = SessionTracker(exit_seconds=2)
    finished, fps = [], 10
    for i in range(2 * 3600 * fps):  # two hours at 10 frames/s
        label = "happy" if i < 3600 * fps else "sad"
        finished += tracker.update(i / fps, [track(1, label)])
    assert finished == [] and len(tracker.open[0].recent) <= 2 * fps + 1
    s = tracker.flush()[0]
    assert s.frames == 2 * 3600 * fps and s.shares["happy"] == pytest.approx(0.5)
    assert s.exit_emotion == "sad"


def test_a_models_own_labels_are_weighed_by_name_and_config_show_names_the_unweighed(model_path, tmp_path):
    """A label with no valence counts as 0, an override gives it one, and `config show` says which."""
    from fer_edge.kiosk.sessions import satisfaction, valences
    from fer_edge.model.metadata import embed_metadata, read_metadata

    labels = ("angry", "confused", "fear", "happy", "sad", "surprise", "neutral")
    weights = valences(labels, {"surprise": 0.0})
    assert weights["confused"] == 0.0 and weights["happy"] == 1.0 and weights["surprise"] == 0.0
    confused = np.eye(7)[1]
    assert satisfaction(confused, weights, labels) == 50.0
    assert satisfaction(confused, valences(labels, {"confused": -0.4}), labels) == 30.0

    data = model_path.read_bytes()
    model = tmp_path / "confused.tflite"
    model.write_bytes(embed_metadata(data, dict(read_metadata(data), labels=list(labels))))
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\npath = "{model}"\n')
    shown = run_cli("fer-edge", "config", "show", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert "confused 0" in shown.stdout and "confused: no valence given, counted as 0" in shown.stdout
    config.write_text(f'[model]\npath = "{model}"\n[sessions.valence]\nconfused = -0.4\n')
    shown = run_cli("fer-edge", "config", "show", "--config", config)
    assert "confused -0.4" in shown.stdout and "counted as 0" not in shown.stdout
