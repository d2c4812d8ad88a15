"""How long a classifier takes for one face: the one measurement that `fer-edge bench` and
`fer-convert`'s gate both report, so their figures mean the same thing."""

import statistics
import time
from typing import Any, Optional, Sequence

import numpy as np


def median_ms(values: Sequence[float]) -> Optional[float]:
    """The median of durations in seconds, in milliseconds (None when there are none)."""
    return round(statistics.median(values) * 1000, 3) if values else None


def per_face_ms(classifier: Any, faces: np.ndarray, warmup: int = 20, repeats: int = 200) -> Optional[float]:
    """Median latency of one face per call (all its views, for faces (N,views,48,48)), after
    warm-up calls that are thrown away."""
    for i in range(warmup):
        classifier.predict(faces[i % len(faces)][None])
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        classifier.predict(faces[i % len(faces)][None])
        times.append(time.perf_counter() - t)
    return median_ms(times)
