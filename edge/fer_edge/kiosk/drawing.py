"""What a person looks at: boxes and labels drawn on frames, an annotated video, a window."""

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..core.labels import colour_bgr

if TYPE_CHECKING:  # for the hints only
    from ..vision.capture import Frame
    from .pipeline import Stats
    from ..vision.track import Track

WHITE = (255, 255, 255)


def label_chip(out: np.ndarray, text: str, x: int, y: int, colour: Tuple[int, int, int], scale: float) -> None:
    """White text on a filled chip of the label's colour, above (x, y) or below it where
    there is no room: readable on any background, and after JPEG compression."""
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, round(4 * scale))
    top = y - th - base - 2 * pad
    if top < 0:
        top = y
    cv2.rectangle(out, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), colour, cv2.FILLED)
    cv2.putText(out, text, (x + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, thickness, cv2.LINE_AA)


def draw(image: np.ndarray, tracks: Sequence) -> np.ndarray:
    """Boxes, labels, confidence and track ids on a copy of the frame."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(0.6, out.shape[1] / 800)
    for track in tracks:
        x, y, w, h = (int(round(v)) for v in track.box)
        colour = colour_bgr(track.label)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, max(2, round(scale * 3)))
        label_chip(out, f"#{track.id} {track.label} {track.confidence * 100:.0f}%", x, y, colour, scale)
    return out


class Annotator:
    """A frame hook writing the annotated video (mp4v works in every OpenCV build, headless too)."""

    def __init__(self, path: str, fps: Optional[float]):
        self.path, self.fps = path, fps or 15.0
        self.writer: Any = None   # a cv2.VideoWriter from the first frame on

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: "Stats") -> None:
        if frame.image is None:   # a frame the codec could not decode
            return
        image = draw(frame.image, tracks)
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: cannot write video")
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class Window:
    """A frame hook for --show: an OpenCV window, where the installed OpenCV has a GUI."""

    def __init__(self, title: str = "fer-edge"):
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OSError("--show needs an OpenCV build with a GUI (opencv-python, not -headless) and a display; "
                          "use --annotate OUT.mp4 instead") from None

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: "Stats") -> None:
        if frame.image is not None:
            cv2.imshow(self.title, draw(frame.image, tracks))
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
