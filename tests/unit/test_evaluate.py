"""The valence figure: which side (negative, neutral, positive) a reading puts the visitor on."""

import numpy as np

from fer_edge.core.labels import LABELS
from fer_edge.tools.evaluate import valence_report


def test_valence_side_is_the_side_with_most_probability():
    # angry, disgust, fear, happy, sad, surprise, neutral: fear + sad outweigh happy; surprise is positive
    probs = np.array([[0.0, 0.0, 0.3, 0.4, 0.3, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.4],
                      [0.1, 0.0, 0.0, 0.2, 0.0, 0.0, 0.7],
                      [0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]])
    truth = np.array([LABELS.index("sad"), LABELS.index("happy"), LABELS.index("neutral"), LABELS.index("angry")])
    found = np.array([True, True, True, False])    # the last photo had no face found: wrong, whatever it reads
    report = valence_report(probs, truth, found, LABELS)
    assert report["valence_accuracy"] == 0.75
    assert report["valence_recall"] == {"negative": 0.5, "neutral": 1.0, "positive": 1.0}


def test_a_label_without_valence_counts_as_neutral():
    labels = ("happy", "bored", "sad")
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    report = valence_report(probs, np.array([1, 0]), np.array([True, True]), labels)
    assert report["valence_accuracy"] == 1.0
