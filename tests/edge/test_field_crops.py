"""Crops as the model knows them: eye-framed BlazeFace faces, a second look at tight
portraits and boxes kept from Haar, on real photos."""

import numpy as np
import cv2

from fer_edge.vision.detect import make_detector
from fer_edge.vision.running_mode import RunningMode
from fer_edge.vision.detectors import FusedDetector
from fer_edge.model.preprocess import FER_EYE_DISTANCE, FER_EYE_MIDPOINT, crop_detected

PORTRAITS = ("single_face.jpg", "astronaut.png", "two_people.jpg", "multi_face.jpg")


def _eyes_in_crop(crop):
    """BlazeFace's eyes in a 48x48 crop (looked at 4x larger, as the FER2013 medians were)."""
    big = cv2.resize(crop, (192, 192), interpolation=cv2.INTER_LINEAR)
    found = make_detector("blazeface", min_size=8).detect(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    return None if not found else np.array(max(found, key=lambda d: d.score).eyes) / 4.0


def test_detected_faces_are_framed_where_fer2013_has_its_eyes(photos):
    detector = make_detector("auto", mode=RunningMode.STILLS, min_size=16)
    measured = []
    for name in PORTRAITS:
        image = cv2.imread(str(photos / name))
        for detection in detector.detect(image):
            assert detection.eyes is not None
            eyes = _eyes_in_crop(crop_detected(image, detection))
            if eyes is not None:
                measured.append(eyes)
    assert len(measured) >= 7, "most of the 9 faces are found again in their own crops"
    midpoints = np.array([eyes.mean(axis=0) for eyes in measured])
    distances = np.array([np.hypot(*(eyes[1] - eyes[0])) for eyes in measured])
    # Eyes found again in a 48-pixel face wander by a pixel or two (FER2013's own middle half
    # of eye distances spans 16.5 to 20.0): the medians must sit within 2 pixels of FER2013's.
    assert np.abs(np.median(midpoints, axis=0) - FER_EYE_MIDPOINT).max() < 2.0, midpoints
    assert abs(np.median(distances) - FER_EYE_DISTANCE) < 2.0, distances


def test_haar_boxes_keep_box_crops(photos):
    image = cv2.imread(str(photos / "single_face.jpg"))
    detection = make_detector("haar", mode=RunningMode.STILLS).detect(image)[0]
    assert detection.eyes is None
    assert crop_detected(image, detection).shape == (48, 48)


def test_a_portrait_cropped_to_the_face_is_found_on_a_second_look(photos):
    image = cv2.imread(str(photos / "single_face.jpg"))
    x, y, w, h = (int(v) for v in make_detector("auto", mode=RunningMode.STILLS, min_size=16).detect(image)[0][:4])
    tight = image[y:y + h, x:x + w]
    assert FusedDetector(min_size=16).detect(tight) == [], "BlazeFace alone misses a face that fills the picture"
    found = make_detector("auto", mode=RunningMode.STILLS, min_size=16).detect(tight)
    assert len(found) == 1
    fx, fy, fw, fh = found[0][:4]
    assert fw > 0.6 * w and abs(fx + fw / 2 - w / 2) < 0.2 * w and abs(fy + fh / 2 - h / 2) < 0.25 * h


def test_a_portrait_cut_at_the_sides_is_found_on_the_second_look(photos):
    """Face crops are often narrower than the face: the second look lets the box hang over."""
    image = cv2.imread(str(photos / "single_face.jpg"))
    x, y, w, h = (int(v) for v in make_detector("auto", mode=RunningMode.STILLS, min_size=16).detect(image)[0][:4])
    narrow = image[y:y + h, x + w // 5:x + w - w // 5]
    found = make_detector("auto", mode=RunningMode.STILLS, min_size=16).detect(narrow)
    assert len(found) == 1
    fx, fy, fw, fh = found[0][:4]
    assert fw > narrow.shape[1] and abs(fx + fw / 2 - narrow.shape[1] / 2) < 0.2 * w
    assert crop_detected(narrow, found[0]).shape == (48, 48)
