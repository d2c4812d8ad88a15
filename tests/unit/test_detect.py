"""Choosing a detector: the registry's names, a wrong name in one line, and the note that
says why a better detector was not chosen, given at construction."""

import pytest

from fer_edge.vision.detect import DETECTORS, REGISTRY, Detection, DetectorError, make_detector


def test_the_names_are_the_registry_and_auto():
    assert DETECTORS == ("auto", *REGISTRY) and "haar" in REGISTRY


def test_an_unknown_detector_is_refused_in_one_line():
    with pytest.raises(DetectorError, match="unknown detector 'yolo'; choose from auto, haar"):
        make_detector("yolo")


def test_a_chosen_detector_carries_no_note():
    detector = make_detector("haar")
    assert detector.name == "haar" and detector.note is None


def test_a_detection_scales_and_shifts_with_its_eyes():
    face = Detection(10, 20, 30, 40, 0.9, ((15.0, 25.0), (25.0, 25.0)))
    assert face.scaled(2) == Detection(20, 40, 60, 80, 0.9, ((30.0, 50.0), (50.0, 50.0)))
    assert face.shifted(-10, 5) == Detection(0, 25, 30, 40, 0.9, ((5.0, 30.0), (15.0, 30.0)))
