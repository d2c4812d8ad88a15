"""detect -> crop -> classify, written once: every command that reads faces uses it.

`fer-edge run` (through the pipeline), the web page's photo upload, `eval --detect` and
`bench` all hand an image to a `FaceAnalyzer` and get the same faces back, so a change to
how faces are framed or classified reaches all of them at once.
"""

from typing import TYPE_CHECKING, Callable, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from .detect import Detection, Detector
from ..core.records import emotion_mix
from ..model.preprocess import SIZE, crop_views

if TYPE_CHECKING:  # for the hint only
    from ..model.classify import EmotionClassifier


class Face(NamedTuple):
    detection: Detection          # box, score and (BlazeFace) eyes, in frame pixels
    crop: np.ndarray              # the 48x48 grey face the model saw (the first, plain view with crops)
    probabilities: np.ndarray     # calibrated, one per label
    labels: Tuple[str, ...]       # the model's labels, in its output order

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    def describe(self) -> dict:
        """JSON-ready: box, label, confidence and the probabilities by label."""
        return {"box": {k: round(float(v), 1) for k, v in zip("xywh", self.detection[:4])},
                "label": self.label, "confidence": round(float(np.max(self.probabilities)), 4),
                "probs": emotion_mix(self.probabilities, self.labels)}


class FaceAnalyzer:
    """A detector and a classifier, with the crop that joins them; with `crops` > 1 each face
    is classified on that many framings of it (`preprocess.crop_views`), averaged."""

    def __init__(self, detector: Detector, classifier: "EmotionClassifier", margin: Optional[float] = None,
                 crops: int = 1):
        self.detector, self.classifier, self.crops = detector, classifier, crops
        self.margin_given = margin
        self.margin = classifier.margin if margin is None else margin

    def use(self, classifier: "EmotionClassifier") -> None:
        """Classify with another model from now on (a deployment), with its margin unless one was set."""
        self.classifier = classifier
        self.margin = classifier.margin if self.margin_given is None else self.margin_given

    @property
    def labels(self) -> Tuple[str, ...]:
        return self.classifier.labels

    def detect(self, image: np.ndarray, detect_image: Optional[np.ndarray] = None,
               detect_scale: float = 1.0) -> List[Detection]:
        """Faces in `image`; `detect_image` (a smaller copy, `detect_scale` times smaller) is searched instead when given."""
        if detect_image is None:
            return self.detector.detect(image)
        return [found.scaled(detect_scale) for found in self.detector.detect(detect_image)]

    def crop(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """The 48x48 grey face the model is shown for `detection`."""
        return crop_views(image, detection, self.margin)[0]

    def views(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """The (crops, 48, 48) framings of `detection` the model reads and averages."""
        return crop_views(image, detection, self.margin, self.crops)

    def classify(self, image: np.ndarray, detections: List[Detection]) -> List[Face]:
        """One batch for all the faces of a frame (and all their views)."""
        if not detections:
            return []
        views = np.stack([self.views(image, found) for found in detections])
        probabilities = self.classifier.predict(views if self.crops > 1 else views[:, 0])
        labels = self.classifier.labels
        return [Face(found, crop, p, labels) for found, crop, p in zip(detections, views[:, 0], probabilities)]

    def analyze(self, image: np.ndarray) -> List[Face]:
        return self.classify(image, self.detect(image))


def largest_faces(photos: Iterable[np.ndarray], detector: Detector, margin: float,
                  progress: Optional[Callable] = None, views: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """48x48 crop of the largest detected face per photo (zeros where none), and which photos
    had one: how labelled photos are read end to end (`eval --detect`, `fer-train --detect`).
    With `views`, (N, views, 48, 48): each face's framings (`crop_views`), as `--crops` reads it.
    `progress` wraps the photos (an iterable in, the same photos out)."""
    crops, found = [], []
    shape = (views or 1, SIZE, SIZE)
    for photo in progress(photos) if progress else photos:
        detections = detector.detect(photo)
        if detections:
            crops.append(crop_views(photo, max(detections, key=lambda d: d.w * d.h), margin, views or 1))
        else:
            crops.append(np.zeros(shape, np.uint8))
        found.append(bool(detections))
    stacked = np.stack(crops) if crops else np.zeros((0, *shape), np.uint8)
    return (stacked if views else stacked[:, 0]), np.array(found, bool)
