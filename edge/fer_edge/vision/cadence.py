"""When the camera loop looks: a kiosk's visitor hardly moves between two frames and an
expression changes over tenths of a second, so neither needs a look at every frame.

A frame is analysed (faces searched in the whole frame, then classified) at most
`analyse_fps` times a second of media time (a file's own clock, or the camera's): a face
that enters is found within 1/analyse_fps s. In between, tracks keep their boxes and
smoothed emotions. While a tracked face's two likeliest emotions are within `CLOSE_CALL` of
each other, every frame is analysed, so a change of label is seen on the frame it happens.
"""

from typing import Iterable, Optional, Sequence

import numpy as np

CLOSE_CALL = 0.2     # the top two emotions this close: analyse every frame
ON_TIME = 1e-3       # a frame early by less than this (seconds) counts as on time


def margin(probs: Sequence[float]) -> float:
    """How far the likeliest emotion is ahead of the next one."""
    top = np.partition(np.asarray(probs), -2)[-2:]
    return float(top[1] - top[0])


class Cadence:
    """Decides, frame by frame, whether to analyse. A rate of 0 means every frame (`--every-frame`)."""

    def __init__(self, analyse_fps: float = 0.0):
        self.interval = 1.0 / analyse_fps if analyse_fps else 0.0
        self.last: Optional[float] = None

    def describe(self) -> str:
        return f"{1 / self.interval:g} analyses/s (more on close calls)" if self.interval else "every frame analysed"

    def due(self, t: float, tracks: Iterable) -> bool:
        """Analyse the frame at media time `t`, given the faces tracked now?"""
        if not self.interval or self.last is None or t - self.last >= self.interval - ON_TIME:
            return True
        return any(margin(track.probs) < CLOSE_CALL for track in tracks)

    def analysed(self, t: float) -> None:
        self.last = t

    def reset(self) -> None:
        """Look afresh on the next frame (after the camera was lost)."""
        self.last = None
