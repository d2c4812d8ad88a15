"""Calibration: how far confidence is from accuracy, and the temperature that closes the gap.

A temperature T divides the logits before the softmax; it changes how sure the model says
it is, never which emotion it picks. It is fitted on held-out faces (FER2013 PublicTest) by
minimising the negative log-likelihood, and travels in the model's metadata.
"""

from typing import List

import numpy as np

from .classify import probabilities

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
