"""The records the sinks send: the view."""

import numpy as np

from fer_edge.core.labels import LABELS


def test_the_view_follows_the_largest_face_and_lists_visits_in_progress():
    from fer_edge.kiosk.sessions import SessionTracker
    from fer_edge.core.records import View
    from fer_edge.vision.track import Track

    def track(id, box, label):
        return Track(id, box, np.eye(7)[LABELS.index(label)] * 0.8 + 0.2 / 7, 0.0, 0.0)

    near, far = track(1, (0, 0, 120, 120), "happy"), track(2, (300, 0, 40, 40), "sad")
    sessions = SessionTracker(min_seconds=1.0, gap_seconds=3.0)
    for t in range(3):
        sessions.update(float(t), [far, near])
    seen = View.of([far, near], sessions.in_progress(2.0), "kiosk", 100.0)
    assert seen.people == 2 and seen.label == "happy" and seen.track == 1
    assert sorted(v.seconds for v in seen.visits) == [2.0, 2.0]
    assert {v.label for v in seen.visits} == {"happy", "sad"}
    empty = View.of([], sessions.in_progress(10.0), "kiosk", 108.0)
    assert empty.people == 0 and empty.label is None and empty.visits == []
    assert seen.to_json()["visits"][0].keys() == {"started", "seconds", "label"}, "the JSON form of MQTT and the page"
