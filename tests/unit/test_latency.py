"""model.latency: the per-face median that bench and the conversion gate both report."""

import numpy as np

from fer_edge.model.classify import EmotionClassifier
from fer_edge.model.latency import median_ms, per_face_ms


def test_median_in_milliseconds_and_none_for_nothing():
    assert median_ms([0.001, 0.003, 0.002]) == 2.0
    assert median_ms([]) is None


def test_per_face_ms_of_the_shipped_model_counts_every_call():
    classifier = EmotionClassifier()
    calls = []
    predict = classifier.predict

    def counted(face):
        calls.append(face)
        return predict(face)

    classifier.predict = counted
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    ms = per_face_ms(classifier, faces, warmup=2, repeats=5)
    assert len(calls) == 7
    assert ms is not None and 0 < ms < 1000
