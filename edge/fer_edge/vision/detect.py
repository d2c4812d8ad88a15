"""Face detection: what a detector gives (`Detection`), which detectors there are
(`REGISTRY`) and which one a run gets (`make_detector`). The detectors themselves, OpenCV's
Haar cascade and MediaPipe's BlazeFace, live in `detectors.py` and are imported only when
one is made, so that `fer-edge --help` and the settings table name them without OpenCV.

A detector takes a BGR or grey frame and returns `Detection`s: a box (x, y, w, h), a score
and, from BlazeFace, the centres of the two eyes, all in frame pixels.

BlazeFace is not ours to ship: its .tflite files come from a path the user gives or from
`fer-edge detector fetch` (detector_files.py).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Protocol, Tuple

from ..core.errors import UserError
from .running_mode import RunningMode

if TYPE_CHECKING:  # for the hints only: numpy is loaded with the detectors
    import numpy as np


class DetectorError(UserError):
    pass


Point = Tuple[float, float]


class Detection(NamedTuple):
    """One face. `eyes` is (eye on the image's left, eye on the image's right) or None."""

    x: float
    y: float
    w: float
    h: float
    score: float
    eyes: Optional[Tuple[Point, Point]] = None

    def scaled(self, factor: float) -> "Detection":
        """The same face in an image `factor` times larger."""
        eyes = None if self.eyes is None else ((self.eyes[0][0] * factor, self.eyes[0][1] * factor),
                                                (self.eyes[1][0] * factor, self.eyes[1][1] * factor))
        return Detection(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score, eyes)

    def shifted(self, dx: float, dy: float) -> "Detection":
        eyes = None if self.eyes is None else ((self.eyes[0][0] + dx, self.eyes[0][1] + dy),
                                                (self.eyes[1][0] + dx, self.eyes[1][1] + dy))
        return Detection(self.x + dx, self.y + dy, self.w, self.h, self.score, eyes)


class Detector(Protocol):
    """What a face detector is to the rest of fer-edge."""

    name: str              # as the start line, the status page and the log name it
    note: Optional[str]    # why a better detector was not chosen (said once at start), or None

    def detect(self, frame: "np.ndarray") -> List[Detection]:
        """The faces in a BGR or grey frame, in frame pixels."""
        ...


NO_BLAZEFACE = "BlazeFace is not installed: `fer-edge detector fetch` installs it (or pass --blazeface-model PATH)"


def find_blazeface(variant: str = "blazeface") -> Optional[str]:
    """Path of a fetched BlazeFace model (short or full range) whose sha256 is right, or None."""
    from .detector_files import find

    return find(variant)


@dataclass
class DetectorOptions:
    """What every detector may use; each takes the options it needs."""

    min_size: int = 24
    threads: int = 1
    mode: RunningMode = RunningMode.VIDEO  # separate photos: coverage counts; video: speed counts
    model_path: Optional[str] = None  # a model file given by the user (BlazeFace)
    note: Optional[str] = None        # the detector's `note`: why a better one was not chosen


def _haar(options: DetectorOptions) -> Detector:
    from .detectors import HaarDetector

    # Video: a 320-pixel copy and coarse scale steps keep Haar near real time; photos get
    # more pixels and finer steps, for the small faces of a group photo.
    if options.mode is RunningMode.STILLS:
        return HaarDetector(max_side=640, scale_factor=1.1, min_size=options.min_size, note=options.note)
    return HaarDetector(max_side=320, scale_factor=1.2, min_size=options.min_size, note=options.note)


def _second_look_for_stills(found: Detector, options: DetectorOptions) -> Detector:
    from .detectors import BorderRetry

    return BorderRetry(found, options.min_size) if options.mode is RunningMode.STILLS else found


def _blazeface(variant: str) -> Callable[[DetectorOptions], Detector]:
    def make(options: DetectorOptions) -> Detector:
        from .detectors import BlazeFaceDetector

        found = BlazeFaceDetector(options.model_path if variant == "blazeface" else None, variant=variant,
                                  min_size=options.min_size, threads=options.threads, note=options.note)
        return _second_look_for_stills(found, options)
    return make


def _blazeface_both(options: DetectorOptions) -> Detector:
    from .detectors import FusedDetector

    return _second_look_for_stills(FusedDetector(min_size=options.min_size, threads=options.threads, note=options.note),
                                   options)


class Registered(NamedTuple):
    make: Callable[[DetectorOptions], Detector]
    installed: Callable[[], bool]               # can it run here (its files present)?


# Adding a detector: a `Detector` in detectors.py, and one line here.
REGISTRY: Dict[str, Registered] = {
    "haar": Registered(_haar, lambda: True),
    "blazeface": Registered(_blazeface("blazeface"), lambda: bool(find_blazeface("blazeface"))),
    "blazeface-full": Registered(_blazeface("blazeface-full"), lambda: bool(find_blazeface("blazeface-full"))),
    "blazeface-both": Registered(_blazeface_both,
                                 lambda: bool(find_blazeface("blazeface") and find_blazeface("blazeface-full"))),
}
DETECTORS = ("auto", *REGISTRY)
# `auto`'s preference: the first installed one wins.
AUTO_VIDEO = ("blazeface", "haar")
AUTO_STILLS = ("blazeface-both", "blazeface", "haar")


def make_detector(name: str = "auto", blazeface_model: Optional[str] = None, mode: RunningMode = RunningMode.VIDEO,
                  min_size: int = 24, threads: int = 1) -> Detector:
    """The detector called `name`. `auto`: a BlazeFace model given by path, else the best
    installed one (short range for video, where speed counts; short + full range for still
    photos, where coverage counts), else Haar. The detector's `note` says why a better one
    was not chosen (to be said once at start), or is None. For still photos BlazeFace looks
    again with a border when it finds nothing."""
    if name not in DETECTORS:
        raise DetectorError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    note = None
    if name == "auto":
        preference = ("blazeface",) if blazeface_model else (AUTO_STILLS if mode is RunningMode.STILLS else AUTO_VIDEO)
        name = next((n for n in preference if blazeface_model or REGISTRY[n].installed()), "haar")
        if name == "haar":
            note = f"{NO_BLAZEFACE}; detecting with the slower, less precise Haar cascade meanwhile"
    return REGISTRY[name].make(DetectorOptions(min_size=min_size, threads=threads, mode=mode, model_path=blazeface_model,
                                               note=note))
