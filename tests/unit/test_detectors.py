"""The detectors' shared geometry: non-maximum suppression and which boxes are usable."""

from fer_edge.vision.detect import Detection
from fer_edge.vision.detectors import keep_usable, nms_boxes


def test_nms_keeps_the_stronger_of_overlapping_faces():
    kept = nms_boxes([Detection(0, 0, 100, 100, 0.6), Detection(5, 5, 100, 100, 0.9), Detection(300, 0, 80, 80, 0.7)], 0.3)
    assert [d.score for d in kept] == [0.9, 0.7]


def test_small_faces_and_faces_mostly_outside_the_frame_are_not_usable():
    boxes = [Detection(10, 10, 100, 100, 0.9), Detection(10, 10, 20, 20, 0.9), Detection(-60, 10, 100, 100, 0.9)]
    assert keep_usable(boxes, (480, 640), min_size=24) == [boxes[0]]
    assert keep_usable(boxes, (480, 640), min_size=24, outside=0.7) == [boxes[0], boxes[2]]
