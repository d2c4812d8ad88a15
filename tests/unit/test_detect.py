"""Detections: non-maximum suppression."""


from fer_edge.vision.detect import Detection
from fer_edge.vision.detectors import nms_boxes


def test_nms_keeps_the_stronger_of_overlapping_faces():
    kept = nms_boxes([Detection(0, 0, 100, 100, 0.6), Detection(5, 5, 100, 100, 0.9), Detection(300, 0, 80, 80, 0.7)], 0.3)
    assert [d.score for d in kept] == [0.9, 0.7]
