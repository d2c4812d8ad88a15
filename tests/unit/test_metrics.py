"""Classification figures in plain numpy, checked by hand on small known cases."""

import numpy as np

from fer_edge.core.labels import LABELS
from fer_edge.model.metrics import classification_report, confusion_matrix, format_report


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], n_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert matrix.dtype == np.int64


def test_the_report_of_a_known_case():
    report = classification_report([0, 0, 1, 1], [0, 1, 1, 1], labels=("a", "b", "c"))
    assert report["n"] == 4 and report["accuracy"] == 0.75
    assert report["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    # F1 of a: P=1, R=0.5 -> 2/3; of b: P=2/3, R=1 -> 0.8; c has no support and is left out of the mean.
    assert abs(report["macro_f1"] - (2 / 3 + 0.8) / 2) < 1e-12
    assert report["support"] == {"a": 2, "b": 2, "c": 0} and report["confusion"][0] == [1, 1, 0]
    json_types = (int, float, str, list, dict)
    assert all(isinstance(value, json_types) for value in report.values())


def test_no_faces_is_a_report_of_zeros_not_a_division_by_zero():
    report = classification_report([], [])   # plain empty lists, as a caller may give them
    assert report["n"] == 0 and report["accuracy"] == 0.0 and report["macro_f1"] == 0.0
    assert report["labels"] == list(LABELS)


def test_the_table_has_a_line_per_class():
    text = format_report(classification_report([0, 1, 2], [0, 1, 1]))
    lines = text.splitlines()
    assert lines[0].startswith("n=3  accuracy=66.67%") and len(lines) == 2 + len(LABELS)
