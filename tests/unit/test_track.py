"""The tracker: ids kept across frames, smoothing, forgetting."""

import numpy as np
import pytest

from fer_edge.vision.track import Tracker

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
