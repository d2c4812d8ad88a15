"""Calibrated probabilities: the expected calibration error of known bins, a temperature fitted
on FER2013 that lowers it, and `fer-edge calibrate` storing the temperature the device applies."""

import numpy as np
import pytest

from conftest import run_cli
from fer_edge.model.calibration import expected_calibration_error, fit_temperature, reliability
from fer_edge.model.classify import EmotionClassifier, probabilities
from fer_edge.model.metadata import read_metadata


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
