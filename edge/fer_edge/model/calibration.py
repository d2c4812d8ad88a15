"""Calibration: how far confidence is from accuracy, and the temperature that closes the gap.

A temperature T divides the logits before the softmax; it changes how sure the model says
it is, never which emotion it picks. It is fitted on held-out faces (FER2013 PublicTest) by
minimising the negative log-likelihood, and travels in the model's metadata.
"""

import os
from typing import List, Optional

import numpy as np

from ..core.atomic import write_atomically
from .classify import EmotionClassifier, probabilities

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"])
                     for row in reliability(probs, labels, bins)) / max(len(labels), 1))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> List[dict]:
    """Per confidence bin: its range, how many faces, their mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "count": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float, mirror: bool) -> float:
    probs = probabilities(logits, temperature, mirror)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, mirror: bool) -> float:
    """The temperature in [0.25, 4] with the lowest negative log-likelihood (a fine grid in
    log T, then a finer one around the best point: the function is smooth and one-dimensional)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 121))
    for _ in range(2):
        losses = [negative_log_likelihood(logits, labels, t, mirror) for t in grid]
        best = int(np.argmin(losses))
        low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        grid = np.linspace(low, high, 41)
    return float(round(grid[int(np.argmin([negative_log_likelihood(logits, labels, t, mirror) for t in grid]))], 4))


def plot_reliability(before: List[dict], after: List[dict], out_png: str, title: str) -> None:
    """Accuracy against confidence per bin, before and after the temperature (the diagonal is perfect)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OSError("--plot needs matplotlib: pip install 'fer-edge[report]'") from None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="perfect calibration")
    for rows, name, colour in ((before, "before", "#e57373"), (after, "after", "#1e88e5")):
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", color=colour, label=name)
    ax.set_xlabel("confidence (mean of each of 15 bins)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def calibrate_model(model_path: str, data_path: str, usage: str = "PublicTest", check_usage: str = "PrivateTest",
                    plot_path: Optional[str] = None) -> dict:
    """Fit the temperature on `usage`, measure it on `check_usage`, and store it in the
    model's metadata (the weights are untouched). Returns what was stored, and the count."""
    from .datasets import read_dataset
    from .metadata import embed_metadata

    classifier = EmotionClassifier(model_path)
    fit_faces, check_faces = (read_dataset(data_path, usage=u, labels=classifier.labels) for u in (usage, check_usage))
    temperature = fit_temperature(classifier.logits(fit_faces.images, 256), fit_faces.labels, classifier.mirror)
    check_logits = classifier.logits(check_faces.images, 256)
    before, after = (probabilities(check_logits, t, classifier.mirror) for t in (1.0, temperature))
    ece_before, ece_after = (expected_calibration_error(p, check_faces.labels) for p in (before, after))
    calibration = {"temperature": temperature, "fitted_on": f"{usage} of {os.path.basename(data_path)}",
                   "mirror": classifier.mirror, "checked_on": check_usage,
                   "ece_before": round(ece_before, 4), "ece_after": round(ece_after, 4)}
    with open(model_path, "rb") as f:
        write_atomically(model_path, embed_metadata(f.read(), dict(classifier.metadata, calibration=calibration)))
    if plot_path:
        plot_reliability(reliability(before, check_faces.labels), reliability(after, check_faces.labels), plot_path,
                         f"{classifier.name} on {check_usage}: ECE {ece_before:.3f} -> {ece_after:.3f} (T = {temperature:g})")
    return dict(calibration, fitted_faces=len(fit_faces))


def describe_calibration(model_path: str, usage: str, check_usage: str, result: dict) -> str:
    """`fer-edge calibrate`'s line: the temperature, what it was fitted and checked on, where it went."""
    return (f"{os.path.basename(model_path)}: temperature {result['temperature']:g} fitted on {result['fitted_faces']} "
            f"{usage} faces; {check_usage} ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}; "
            f"stored in {model_path}")
