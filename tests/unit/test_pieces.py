"""Fast tests of the pieces on their own: tracker, outbox, pacing, NMS, drawing, settings,
errors, image headers. No model, no subprocess: `pytest tests/unit` runs in seconds."""

import threading
import time

import cv2
import numpy as np
import pytest

from fer_edge.capture import Frame, paced
from fer_edge.detect import Detection, nms_boxes
from fer_edge.drawing import draw
from fer_edge.labels import LABELS, colour_bgr
from fer_edge.errors import UserError, one_line
from fer_edge.image_header import ImageHeaderError, image_size
from fer_edge.outbox import Outbox
from fer_edge.settings import BY_NAME, ConfigError, Settings, check, from_mapping, resolve, split_host_port
from fer_edge.track import Tracker

HAPPY = np.eye(7)[3]
SAD = np.eye(7)[4]


def test_tracker_keeps_ids_smooths_and_forgets():
    tracker = Tracker(iou_threshold=0.3, max_misses=2, alpha=0.5)
    first = tracker.update([(10, 10, 50, 50)], np.array([HAPPY]), 0.0)
    assert [t.id for t in first] == [1] and first[0].label == "happy"
    moved = tracker.update([(14, 12, 50, 50), (200, 10, 40, 40)], np.array([SAD, HAPPY]), 0.1)
    assert [t.id for t in moved] == [1, 2]
    assert moved[0].probs[3] == pytest.approx(0.5) and moved[0].probs[4] == pytest.approx(0.5)  # one noisy frame
    for step in range(3):
        tracker.update([], np.zeros((0, 7)), 0.2 + step)
    assert tracker.tracks == [] and {t.id for t in tracker.ended} == {1, 2}
    assert [t.id for t in tracker.update([(14, 12, 50, 50)], np.array([HAPPY]), 9.0)] == [3], "ids only grow"


def test_outbox_keeps_order_and_drops_emotions_first(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"), max_messages=3)
    box.put("session", "t/session", {"n": 1})
    box.put("emotion", "t/emotion", {"n": 2})
    box.put("session", "t/session", {"n": 3})
    box.put("session", "t/session", {"n": 4})  # over the bound: the oldest emotion goes
    rows = box.pending()
    assert [r[1] for r in rows] == ["t/session"] * 3 and box.counters() == {"dropped_emotion": 1}
    box.put("session", "t/session", {"n": 5})  # no emotion left: the oldest of anything
    assert box.counters() == {"dropped_emotion": 1, "dropped_session": 1}
    seqs = [r[0] for r in box.pending()]
    box.acknowledged(seqs[:2])
    assert box.count() == 1 and box.pending(after_seq=seqs[2]) == []
    box.close()


def test_outbox_sender_takes_an_acknowledgement_that_comes_before_send_returns(tmp_path):
    """A broker on loopback can acknowledge a message before publish() has returned its id:
    the row is still deleted and its place in the window given back."""
    from fer_edge.outbox import OutboxSender, Transport

    class AnswersAtOnce(Transport):
        def __init__(self):
            self.sender, self.sent, self.next_id = None, [], 0

        def ready(self):
            return self.sender is not None

        def send(self, address, payload, qos, retain):
            self.next_id += 1
            self.sent.append(payload)
            self.sender.acknowledge(self.next_id)   # the answer arrives on another thread, first
            return True, self.next_id

    path = str(tmp_path / "outbox.db")
    box = Outbox(path)
    for n in range(30):
        box.put("session", "t/session", {"n": n})
    transport = AnswersAtOnce()
    sender = OutboxSender(path, transport, window=5)
    transport.sender = sender
    sender.nudge()
    deadline = time.monotonic() + 10
    while box.count() and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop()
    assert box.count() == 0 and len(transport.sent) == 30 and not sender.inflight
    box.close()


def test_paced_limits_rate_and_count():
    frames = (Frame(i, i / 100, None) for i in range(1000))
    started = time.monotonic()
    taken = list(paced(frames, fps_cap=20, max_frames=6, stop=threading.Event()))
    assert [f.index for f in taken] == list(range(6)) and time.monotonic() - started >= 5 / 20 * 0.9


def test_nms_keeps_the_stronger_of_overlapping_faces():
    kept = nms_boxes([Detection(0, 0, 100, 100, 0.6), Detection(5, 5, 100, 100, 0.9), Detection(300, 0, 80, 80, 0.7)], 0.3)
    assert [d.score for d in kept] == [0.9, 0.7]


def test_drawing_marks_the_face_in_its_colour():
    class Track:
        id, box, label, confidence = 1, (20, 30, 60, 60), "happy", 0.9

    image = np.zeros((120, 160, 3), np.uint8)
    out = draw(image, [Track()])
    assert image.sum() == 0, "the frame itself is left as it is"
    assert tuple(out[89, 50]) == colour_bgr("happy"), "the box's bottom edge"
    chip = out[:30, 20:120]
    assert (chip == colour_bgr("happy")).all(axis=2).sum() > 300, "a filled chip in the label's colour"
    assert (chip > 200).all(axis=2).sum() > 20, "white text on it"


def test_settings_one_rule_for_flags_and_files():
    margin = BY_NAME["model_margin"]
    assert check(margin, 0.2, "x") == 0.2
    for bad in (10, float("nan"), float("inf"), "0.2", True):
        with pytest.raises(ConfigError):
            check(margin, bad, "x")
    assert margin.kind.problem(margin.kind.from_text("10")) == "expected a number in 0..1"
    assert split_host_port("[::1]:8080", None) == ("::1", 8080)
    assert split_host_port("broker.lan", 1883) == ("broker.lan", 1883)
    with pytest.raises(ValueError):
        split_host_port("host:0", 1883)
    values = from_mapping({"model": {"threads": 2}, "source": {"path": "a.mp4"}})
    settings = resolve(values, {"source_camera": "0"})
    assert settings.source.camera == "0" and settings.source.path is None and settings.model.threads == 2
    assert Settings({}).mqtt.prefix == "fer-edge" and Settings({}).log.enabled is True


def test_errors_show_user_errors_alone_and_bugs_with_their_type():
    assert one_line(UserError("camera 0: cannot open")) == "camera 0: cannot open"
    assert one_line(FileNotFoundError(2, "No such file")) == "[Errno 2] No such file"
    bug = one_line(KeyError("frames"))
    assert bug.startswith("KeyError: 'frames'") and "FER_EDGE_DEBUG=1" in bug


def test_image_headers_give_the_size_before_decoding():
    for suffix in (".png", ".jpg"):
        ok, data = cv2.imencode(suffix, np.zeros((37, 91, 3), np.uint8))
        assert image_size(data.tobytes())[1:] == (91, 37)
    ok, bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageHeaderError, match="not a JPEG or PNG"):
        image_size(bmp.tobytes())


def test_loopback_is_recognised_for_v4_v6_and_names():
    from fer_edge.web import is_loopback, is_loopback_name

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert is_loopback_name("[::1]".strip("[]")) and not is_loopback_name("evil.example")


def test_the_view_follows_the_largest_face_and_lists_visits_in_progress():
    from fer_edge.sessions import SessionTracker
    from fer_edge.sinks import view

    class Track:
        def __init__(self, id, box, label):
            self.id, self.box, self.label, self.confidence = id, box, label, 0.8
            self.probs = np.eye(7)[LABELS.index(label)]

    near, far = Track(1, (0, 0, 120, 120), "happy"), Track(2, (300, 0, 40, 40), "sad")
    sessions = SessionTracker(min_seconds=1.0, gap_seconds=3.0)
    for t in range(3):
        sessions.update(float(t), [far, near])
    seen = view([far, near], sessions.in_progress(2.0), "kiosk", 100.0)
    assert seen["people"] == 2 and seen["label"] == "happy" and seen["track"] == 1
    assert sorted(v["seconds"] for v in seen["visits"]) == [2.0, 2.0]
    assert {v["label"] for v in seen["visits"]} == {"happy", "sad"}
    empty = view([], sessions.in_progress(10.0), "kiosk", 108.0)
    assert empty["people"] == 0 and empty["label"] is None and empty["visits"] == []


def test_the_live_status_says_a_stalled_camera_and_a_stop():
    from fer_edge.live import LiveState
    from fer_edge.pipeline import Stats

    live = LiveState({"camera": True})
    assert live.status()["state"] == "starting" and live.status()["last_frame_seconds"] is None
    stats = Stats(frames=1, last_frame_at=time.monotonic() - 12.0)
    live.on_frame(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8)), [], stats)
    status = live.status()
    assert status["state"] == "running" and 11.5 < status["last_frame_seconds"] < 13.0
    live.stopping()
    assert live.status()["state"] == "stopping"


def test_topic_prefixes_with_wildcards_or_empty_levels_are_refused():
    for key in ("mqtt_prefix", "mqtt_discovery_prefix"):
        for bad in ("ha/#", "site/+/kiosk", "/fer-edge", "fer-edge/", "a//b"):
            with pytest.raises(ConfigError):
                check(BY_NAME[key], bad, f"[mqtt] {key}")
        assert check(BY_NAME[key], "shop-3/kiosks", f"[mqtt] {key}") == "shop-3/kiosks"


def test_the_watchdog_is_not_fed_while_a_worker_is_down(tmp_path):
    """A real unix datagram socket as $NOTIFY_SOCKET: frames progress, but a dead sender stops the pings."""
    import socket

    from fer_edge.notify import Notifier
    from fer_edge.pipeline import Stats

    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    alive = {"sender": True}
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}, healthy=lambda: alive["sender"])

    def pings(frames):
        said = []
        for n in range(frames):
            notifier.on_frame(None, [], Stats(frames=len(said) * 1000 + n + 1))
            time.sleep(0.015)
        try:
            while True:
                said.append(server.recv(4096).decode())
        except OSError:
            return sum("WATCHDOG=1" in message for message in said)

    assert pings(10) > 0
    alive["sender"] = False
    assert pings(10) == 0
    server.close()
