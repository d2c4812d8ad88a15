"""Crops as the model knows them: eye-framed BlazeFace faces, a second look at tight
portraits, mirror averaging and calibrated probabilities, on real photos and FER2013."""

import numpy as np
import cv2
import pytest

from conftest import run_cli
from fer_edge.model.calibration import expected_calibration_error, fit_temperature, reliability
from fer_edge.model.classify import EmotionClassifier, probabilities
from fer_edge.vision.detect import make_detector
from fer_edge.vision.running_mode import RunningMode
from fer_edge.vision.detectors import FusedDetector
from fer_edge.model.metadata import read_metadata
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


def test_mirror_averaging_is_the_mean_of_the_face_and_its_mirror_image(public_test, model_path):
    faces = public_test.images[:64]
    plain = EmotionClassifier(str(model_path), mirror=False)
    both = EmotionClassifier(str(model_path), mirror=True)
    expected = (plain.predict(faces) + plain.predict(faces[:, :, ::-1])) / 2
    assert np.abs(both.predict(faces) - expected).max() < 1e-5


def test_expected_calibration_error_of_known_bins():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])  # 0.9 bin: half right; 0.6 bin: all right
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert [r["count"] for r in reliability(probs, labels)] == [2, 2]


@pytest.mark.slow
def test_a_fitted_temperature_lowers_calibration_error_on_fer2013(public_test, model_path):
    classifier = EmotionClassifier(str(model_path))
    logits = classifier.logits(public_test.images, max_batch=256)
    temperature = fit_temperature(logits, public_test.labels, classifier.mirror)
    before = expected_calibration_error(probabilities(logits, 1.0, True), public_test.labels)
    after = expected_calibration_error(probabilities(logits, temperature, True), public_test.labels)
    assert after < before * 0.6, (before, after, temperature)


@pytest.mark.slow
def test_calibrate_stores_the_temperature_that_the_device_applies(fer_csv, model_path, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(model_path.read_bytes())
    result = run_cli("fer-edge", "calibrate", model, "--data", fer_csv, "--plot", tmp_path / "reliability.png")
    assert result.returncode == 0, result.stderr
    calibration = read_metadata(model.read_bytes())["calibration"]
    assert calibration["ece_after"] < calibration["ece_before"] and calibration["fitted_on"].startswith("PublicTest")
    assert calibration["checked_on"] == "PrivateTest"
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    faces = np.zeros((1, 48, 48), np.uint8) + 128
    stored = EmotionClassifier(str(model))
    assert stored.temperature == calibration["temperature"]
    logits = stored.logits(faces)
    assert np.allclose(stored.predict(faces), probabilities(logits, calibration["temperature"], True), atol=1e-6)
    evaluated = run_cli("fer-edge", "eval", "--model", model, "--data", fer_csv, "--json")
    assert evaluated.returncode == 0 and '"ece": ' in evaluated.stdout
