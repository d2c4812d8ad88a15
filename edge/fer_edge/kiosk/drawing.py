"""What a person looks at: boxes and labels drawn on frames, an annotated video, a window."""

import os
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..core.errors import UserError
from ..core.labels import colour_bgr

if TYPE_CHECKING:  # for the hints only
    from ..vision.capture import Frame
    from .pipeline import Stats
    from ..vision.track import Track

WHITE = (255, 255, 255)
# The containers the annotated video can be written in, and their codec. OpenCV's bundled
# FFmpeg has no H.264 encoder: .mp4 (MPEG-4 Part 2) is the cheapest to write and plays in
# VLC or mpv; .webm (VP8) costs more CPU and plays in every browser.
VIDEO_CODECS = {".mp4": "mp4v", ".webm": "VP80"}


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """OpenCV's FFmpeg prints a line straight to stderr for every .webm it opens (that the
    codec's tag is not WebM's, which it then picks itself): hide it while the file opens."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _codec(path: str) -> str:
    """The codec of `path`'s container; a UserError for another extension or a missing folder."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in VIDEO_CODECS:
        raise UserError(f"--annotate {path}: expected a .mp4 or .webm file (.webm plays in a browser)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--annotate {path}: no such folder {folder}")
    return VIDEO_CODECS[extension]


def open_video(path: str, fps: float, size: Tuple[int, int]) -> Any:
    """A cv2.VideoWriter for `path`, its codec chosen by the file's extension."""
    codec = _codec(path)
    with _quiet_stderr():
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write video")
    return writer


def check_video_path(path: str, source: Optional[str] = None, log: Optional[str] = None) -> None:
    """Open and drop a small video beside `path` (never `path` itself, which may be a file the
    user keeps): a wrong name, folder or codec is said before the source is processed, not after.
    The run's source and its log (`log`) are never written over."""
    for other, what in ((source, "the source"), (log, "the run's log (--db)")):
        if other and (os.path.realpath(path) == os.path.realpath(other) or (
                os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other))):
            raise UserError(f"--annotate {path}: that is {what}; write the annotated video elsewhere")
    if os.path.lexists(path) and not os.path.isfile(path):   # a folder, a device, a link to nowhere
        raise UserError(f"--annotate {path}: not a file a video can be written to")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"--annotate {path}: not writable")
    _codec(path)
    try:
        handle, probe = tempfile.mkstemp(prefix=".fer-edge-probe-", suffix=os.path.splitext(path)[1],
                                         dir=os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise OSError(f"{path}: cannot write video ({exc.strerror})") from None
    os.close(handle)
    try:
        open_video(probe, 15.0, (64, 64)).release()
    except OSError:
        raise OSError(f"{path}: cannot write video") from None
    finally:
        os.remove(probe)


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
    """A frame hook writing the annotated video (.mp4 or .webm: VIDEO_CODECS)."""

    def __init__(self, path: str, fps: Optional[float]):
        self.path, self.fps = path, fps or 15.0
        self.writer: Any = None   # a cv2.VideoWriter from the first frame on

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: "Stats") -> None:
        if frame.image is None:   # a frame the codec could not decode
            return
        image = draw(frame.image, tracks)
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = open_video(self.path, self.fps, (w, h))
        self.writer.write(image)

    def stopping(self) -> None:
        pass

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

    def stopping(self) -> None:
        pass

    def close(self) -> None:
        cv2.destroyWindow(self.title)
