"""The detectors: their shared geometry (non-maximum suppression, which boxes are usable,
BlazeFace's anchors), and Haar and BlazeFace on real photos: boxes in frame pixels, eyes
inside their face, the full-range model's small faces, a file that is no model in one line."""

import cv2
import numpy as np
import pytest

from fer_edge.vision.detect import Detection, DetectorError
from fer_edge.vision.detectors import (BlazeFaceDetector, FusedDetector, HaarDetector, blazeface_anchors, keep_usable,
                                       nms_boxes)


def test_nms_keeps_the_stronger_of_overlapping_faces():
    kept = nms_boxes([Detection(0, 0, 100, 100, 0.6), Detection(5, 5, 100, 100, 0.9), Detection(300, 0, 80, 80, 0.7)], 0.3)
    assert [d.score for d in kept] == [0.9, 0.7]


def test_small_faces_and_faces_mostly_outside_the_frame_are_not_usable():
    boxes = [Detection(10, 10, 100, 100, 0.9), Detection(10, 10, 20, 20, 0.9), Detection(-60, 10, 100, 100, 0.9)]
    assert keep_usable(boxes, (480, 640), min_size=24) == [boxes[0]]
    assert keep_usable(boxes, (480, 640), min_size=24, outside=0.7) == [boxes[0], boxes[2]]


def test_haar_finds_the_face_with_no_eyes_in_frame_pixels(photos):
    image = cv2.imread(str(photos / "single_face.jpg"))
    [small] = HaarDetector(max_side=320).detect(image)
    [large] = HaarDetector(max_side=max(image.shape[:2])).detect(image)
    assert small.eyes is None and abs(small.x - large.x) < 0.1 * large.w and abs(small.w - large.w) < 0.15 * large.w
    assert HaarDetector().detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)), "a grey frame is read as well"


def test_blazeface_gives_every_face_its_eyes_inside_its_box(photos):
    image = cv2.imread(str(photos / "two_people.jpg"))
    found = BlazeFaceDetector().detect(image)
    assert len(found) == 2
    for face in found:
        for ex, ey in face.eyes:
            assert face.x < ex < face.x + face.w and face.y < ey < face.y + face.h
        left, right = face.eyes
        assert left[0] < right[0], "the eye on the image's left first"
    assert BlazeFaceDetector().detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_the_full_range_model_adds_the_small_faces_of_a_group(photos):
    image = cv2.imread(str(photos / "multi_face.jpg"))
    short = BlazeFaceDetector(min_size=8).detect(image)
    both = FusedDetector(min_size=8).detect(image)
    assert len(both) >= len(short) and len(both) >= 3


def test_a_file_that_is_no_blazeface_model_is_one_line(tmp_path):
    garbage = tmp_path / "face.tflite"
    garbage.write_bytes(b"\x00" * 2048)
    for path in (garbage, tmp_path / "absent.tflite"):
        with pytest.raises(DetectorError, match=f"{path}: cannot load BlazeFace model") as raised:
            BlazeFaceDetector(str(path))
        assert "\n" not in str(raised.value)


def test_the_anchors_of_both_blazeface_layouts():
    assert blazeface_anchors().shape == (896, 2) and blazeface_anchors(192, (4,), 1).shape == (2304, 2)
    anchors = blazeface_anchors()
    assert anchors.min() > 0 and anchors.max() < 1
