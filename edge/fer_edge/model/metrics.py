"""Classification metrics in plain numpy: accuracy, macro-F1, per-class recall, confusion."""

from typing import Sequence, Union

import numpy as np

from ..core.labels import LABELS


N_CLASSES = len(LABELS)
Labels = Union[Sequence[int], np.ndarray]   # class indices


def confusion_matrix(truth: Labels, predicted: Labels, n_classes: int = N_CLASSES) -> np.ndarray:
    """Rows are the true class, columns the predicted one."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def classification_report(truth: Labels, predicted: Labels, labels: Sequence[str] = LABELS) -> dict:
    """The figures `fer-edge eval --json` prints, as plain Python types."""
    matrix = confusion_matrix(truth, predicted, len(labels))
    n = int(matrix.sum())
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    hits = np.diag(matrix)
    recall = np.divide(hits, support, out=np.zeros(len(labels)), where=support > 0)
    precision = np.divide(hits, predicted_count, out=np.zeros(len(labels)), where=predicted_count > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(len(labels)), where=denom > 0)
    present = support > 0
    return {
        "n": n,
        "accuracy": float(hits.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {label: float(r) for label, r in zip(labels, recall)},
        "per_class_f1": {label: float(f) for label, f in zip(labels, f1)},
        "support": {label: int(s) for label, s in zip(labels, support)},
        "labels": list(labels),
        "confusion": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """A short human-readable table of a classification report."""
    lines = [f"n={report['n']}  accuracy={report['accuracy'] * 100:.2f}%  macro-F1={report['macro_f1'] * 100:.2f}%",
             f"{'class':<10}{'support':>8}{'recall':>8}{'F1':>8}"]
    for label in report["labels"]:
        lines.append(f"{label:<10}{report['support'][label]:>8}{report['per_class_recall'][label] * 100:>7.1f}%"
                     f"{report['per_class_f1'][label] * 100:>7.1f}%")
    return "\n".join(lines)
