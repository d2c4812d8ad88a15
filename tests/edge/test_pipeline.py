"""The camera loop on its own (`pipeline.Pipeline`): real frames of a real face, the shipped
model and BlazeFace (Haar where BlazeFace was not fetched), and a sink that keeps what it
is given."""

import numpy as np
import pytest

from conftest import read_frames
from fer_edge.vision.analyzer import FaceAnalyzer
from fer_edge.vision.cadence import Cadence
from fer_edge.vision.capture import Frame
from fer_edge.model.classify import EmotionClassifier
from fer_edge.vision.detect import make_detector
from fer_edge.kiosk.pipeline import Pipeline
from fer_edge.core.records import CAMERA_LOST, SOURCE_ENDED, TrackUpdate, View, Visit
from fer_edge.kiosk.sessions import SessionTracker
from fer_edge.core.events import EventSink
from fer_edge.vision.track import Tracker


class Kept(EventSink):
    """Keeps every record the pipeline sends."""

    def __init__(self):
        self.updates, self.visits, self.views, self.stats_messages, self.closed = [], [], [], [], None

    def update(self, update):
        self.updates.append(update)

    def session(self, visit):
        self.visits.append(visit)

    def view(self, view):
        self.views.append(view)

    def stats(self, stats):
        self.stats_messages.append(stats)

    def close(self, summary):
        self.closed = summary


@pytest.fixture(scope="module")
def face_frames(photos):
    return read_frames(photos / "single_face.mp4")[:60]


def pipeline(sink, cadence=None):
    analyzer = FaceAnalyzer(make_detector("auto"), EmotionClassifier())
    sessions = SessionTracker(min_seconds=0.5, gap_seconds=1.0, exit_seconds=0.5, device_id="kiosk")
    return Pipeline(analyzer, Tracker(), [sink], device_id="kiosk", log_interval=0.0, sessions=sessions,
                    stats_interval=0.5, cadence=cadence)


def test_records_reach_the_sinks_and_a_visit_ends_with_the_source(face_frames):
    sink = Kept()
    loop = pipeline(sink)
    for index, image in enumerate(face_frames):
        loop.process(Frame(index, index / 30.0, image))
    loop.close()
    assert len(sink.updates) == len(face_frames) and all(isinstance(u, TrackUpdate) for u in sink.updates)
    assert {u.track for u in sink.updates} == {1} and all(u.analysed for u in sink.updates)
    assert sink.views and isinstance(sink.views[0], View) and sink.views[0].people == 1
    [visit] = sink.visits
    assert isinstance(visit, Visit) and visit.ended_by == SOURCE_ENDED and visit.frames == len(face_frames)
    assert sink.closed["frames"] == len(face_frames) and loop.stats.analysed == len(face_frames)
    message = loop.stats_payload().to_json()
    assert message["frames"] == len(face_frames) and message["device"] == "kiosk" and "health" not in message


def test_a_gap_in_the_frames_ends_the_visit_as_camera_lost(face_frames):
    sink = Kept()
    loop = pipeline(sink)
    for index, image in enumerate(face_frames[:30]):
        loop.process(Frame(index, index / 30.0, image))
    for index, image in enumerate(face_frames[30:], start=30):      # 5 s later: the camera stalled
        loop.process(Frame(index, 5.0 + index / 30.0, image))
    loop.close()
    assert [v.ended_by for v in sink.visits] == [CAMERA_LOST, SOURCE_ENDED] and loop.stats.camera_lost == 1
    first_track = {u.track for u in sink.updates if u.frame < 30}
    assert first_track == {1} and {u.track for u in sink.updates if u.frame >= 30} == {2}, "afterwards a new track"


def test_between_looks_the_face_is_carried_over(face_frames):
    sink = Kept()
    loop = pipeline(sink, Cadence(6.0))
    for index, image in enumerate(face_frames):
        loop.process(Frame(index, index / 30.0, image))
    loop.close()
    looked = [u for u in sink.updates if u.analysed]
    assert len(sink.updates) == len(face_frames), "a carried face is still reported on every frame"
    assert 0 < len(looked) < len(face_frames) and loop.stats.analysed == len(looked)
    carried = [u for u in sink.updates if not u.analysed]
    assert all(np.isfinite(u.confidence) and u.box.w > 0 for u in carried)


class Heard(Kept):
    def __init__(self):
        super().__init__()
        self.models = []

    def model_changed(self, name, labels):
        self.models.append((name, tuple(labels)))


def relabelled_model(folder, labels):
    """The shipped model under other label names (what a fine-tuned model's metadata says)."""
    from fer_edge.model.classify import default_model_path
    from fer_edge.model.metadata import embed_metadata, read_model_metadata

    data = open(default_model_path(), "rb").read()
    path = folder / "relabelled.tflite"
    path.write_bytes(embed_metadata(data, dict(read_model_metadata(default_model_path()), labels=list(labels))))
    return str(path)


def test_a_swap_to_the_same_labels_loses_no_frame_and_keeps_the_visit(face_frames):
    sink, swapped = Heard(), []
    loop = pipeline(sink)
    new = EmotionClassifier()
    new.name = "new v2"
    for index, image in enumerate(face_frames):
        if index == 30:
            loop.request_swap(new, on_swapped=swapped.append)
            assert loop.analyzer.classifier is not new, "taken at the start of the next frame"
        loop.process(Frame(index, index / 30.0, image))
    loop.close()
    assert swapped == [30] and loop.analyzer.classifier is new and sink.models == [("new v2", new.labels)]
    assert loop.stats.frames == len(face_frames) and len(sink.updates) == len(face_frames)
    [visit] = sink.visits
    assert visit.ended_by == SOURCE_ENDED and visit.frames == len(face_frames)


def test_a_swap_to_other_labels_ends_the_visit_and_starts_over_in_them(face_frames, tmp_path):
    from fer_edge.core.records import MODEL_CHANGED

    from fer_edge.kiosk.live import LiveState

    labels = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    sink, live = Heard(), LiveState({"device": "kiosk", "model": "fer-cnn-int8.tflite"})
    loop = pipeline(sink)
    loop.hooks.append(live)
    new = EmotionClassifier(relabelled_model(tmp_path, labels))
    for index, image in enumerate(face_frames):
        if index == 30:
            loop.request_swap(new)
        loop.process(Frame(index, index / 30.0, image))
    loop.close()
    assert sink.models == [("relabelled.tflite", labels)] and loop.stats.frames == len(face_frames)
    assert [v.ended_by for v in sink.visits] == [MODEL_CHANGED, SOURCE_ENDED]
    assert set(sink.visits[1].shares) <= set(labels) and sink.visits[1].dominant in labels
    before, after = sink.updates[:30], sink.updates[30:]
    assert len(after) == 30 and {u.track for u in before} == {1} and {u.track for u in after} == {2}
    assert all(set(u.probs) == set(labels) for u in after) and all("happy" in u.probs for u in before)
    assert sink.views[-1].people == 1 and sink.views[-1].label in labels
    status = live.status()
    assert status["model"] == "relabelled.tflite" and status["labels"] == list(labels), "the page names the new model"
    assert {t["label"] for t in status["tracks"]} <= set(labels)
