"""Frame sources: a camera (OpenCV/V4L2 or picamera2), a video or image file, a folder of
images, or a stream URL. Live sources that fail are reopened with backoff; files end.

Every source yields `Frame`s. `media_time` is seconds into the source (file position for
files, the monotonic clock for live sources), so rate limits and visit durations behave the
same at any speed and whatever the wall clock does.
"""

import glob
import importlib
import os
import queue
import socket
import stat
import threading
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..core.media import is_image_path
from ..core.errors import UserError
from ..core.network import without_password
from ..core.log import say


def _quiet_opencv() -> None:
    """OpenCV's own warnings (a camera index that cannot be opened, at every try) would drown
    fer-edge's one-line messages; its errors still show. FFmpeg's lines (`[tcp @ 0x...]
    Connection refused`, at every reconnect) are silenced: fer-edge says what failed in its
    own words. OPENCV_FFMPEG_LOGLEVEL set by the user is kept, for debugging a stream. Not
    every build has the same API."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")   # AV_LOG_QUIET; read at FFmpeg's first use
    try:
        logging = importlib.import_module("cv2.utils.logging")
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        if hasattr(cv2, "setLogLevel"):
            cv2.setLogLevel(2)  # cv::utils::logging::LOG_LEVEL_ERROR


_quiet_opencv()

STREAM_TIMEOUT_MS = 5000
URL_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(UserError):
    """A source that cannot be opened at all; one line for the user."""


class Frame:
    """One frame of a source. `image` (BGR or grey, for crops and annotation) may be decoded
    only when first asked for (`load`): a frame that is neither analysed nor shown then costs
    just its grab. It must be asked for before the source moves to the next frame."""

    def __init__(self, index: int, media_time: float, image: Optional[np.ndarray] = None,
                 detect_image: Optional[np.ndarray] = None, detect_scale: float = 1.0,
                 load: Optional[Callable[[], Optional[np.ndarray]]] = None):
        self.index, self.media_time = index, media_time
        self._image, self._load = image, load
        self.detect_image = detect_image    # optional smaller/grey image for detection (picamera2 lores)
        self.detect_scale = detect_scale    # frame pixels per detect_image pixel

    @property
    def image(self) -> Optional[np.ndarray]:
        if self._image is None and self._load is not None:
            self._image, self._load = self._load(), None
        return self._image


RECONNECT_CAP_SECONDS = 2.0   # a camera back after a stall is reopened within this
STILL_DOWN_SAY_SECONDS = 60.0  # how often a source that stays down is said again
BOUNDED_GIVE_UP_SECONDS = 20.0  # a bounded run (--max-frames) gives up on a source down this long


def why_no_answer(url: str) -> str:
    """What a quick TCP connect to a stream's host says, in words (FFmpeg's own reason is silenced)."""
    parts = urlsplit(url)
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        return "bad port in the address"
    if not parts.hostname or port is None or parts.scheme == "udp":
        return "no frames"
    try:
        socket.create_connection((parts.hostname, port), timeout=2.0).close()
    except socket.gaierror:
        return f"unknown host {parts.hostname}"
    except ConnectionRefusedError:
        return f"connection refused: nothing listens on {parts.hostname}:{port}"
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or exc}"
    return f"{parts.hostname}:{port} answers, but sends no video there"


def is_pipe(path: Union[int, str]) -> bool:
    try:
        return isinstance(path, str) and stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class Backoff:
    """Waits 0.5 s, 1 s, 2 s ... up to `cap` between reconnects; interruptible by `stop`."""

    def __init__(self, stop: threading.Event, first: float = 0.5, cap: float = RECONNECT_CAP_SECONDS):
        self.stop, self.first, self.cap, self.delay = stop, first, cap, first

    def wait(self) -> None:
        self.stop.wait(self.delay)
        self.delay = min(self.cap, self.delay * 2)

    def reset(self) -> None:
        self.delay = self.first


class OpenCVSource:
    """A camera index, a video file, a named pipe or a URL through cv2.VideoCapture.

    A pipe blocks FFmpeg until its writer opens it and sends, and a signal cannot interrupt
    that: a pipe is opened and read on a thread of its own, and opened once only (a second
    open would wait for a writer that has gone). `give_up_after`: a live source down that
    many seconds ends the run with a SourceError (a bounded run must end)."""

    def __init__(self, target: Union[int, str], live: bool, stop: Optional[threading.Event] = None,
                 on_event: Callable[[str], None] = say, wait: bool = True, lean: bool = False,
                 give_up_after: Optional[float] = None):
        self.target, self.live, self.lean = target, live, lean
        self.name = without_password(str(target))   # as messages show it: a camera's rtsp://user:password@ masked
        self.stop = stop or threading.Event()
        self.on_event = on_event
        self.give_up_after = give_up_after
        self.capture: Any = None   # a cv2.VideoCapture once open
        self.fps: Optional[float] = None
        self.reconnects = 0
        self.frame_count = 0
        self.ended_early: Optional[str] = None
        self.pipe = is_pipe(target)
        self.reader: Optional[threading.Thread] = None
        if self.pipe:
            return   # opened by frames(), on its thread
        if not self._open(first=True) and live:
            if not wait:
                raise SourceError(self._down())
            self.on_event(f"{self._down()}; trying again with backoff")

    def _down(self) -> str:
        """Why the live source gives no frames, in one line."""
        if isinstance(self.target, int) or str(self.target).startswith("/dev/video"):
            return (f"camera {self.target}: cannot open (no camera there, or another program is using it; "
                    "`ls /dev/video*` lists cameras)")
        return f"{self.name}: no answer from the stream ({why_no_answer(str(self.target))})"

    def _open(self, first: bool = False) -> bool:
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target, cv2.CAP_V4L2) if os.name == "posix" else cv2.VideoCapture(self.target)
        elif self.live:
            # A stalled stream must not block for ever: time out, then reconnect with backoff.
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        elif self.pipe:
            # FFmpeg only: after it refuses what the pipe sent, OpenCV's next backend would open
            # the pipe again and wait for ever for a writer that has gone.
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1] if self.lean else [])
        elif self.lean:
            # At camera rate one decoding thread: more threads cost CPU handing frames over.
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            if not capture.isOpened():
                capture = cv2.VideoCapture(self.target)
        else:  # as fast as it goes: FFmpeg decodes the next frames while this one is analysed
            capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            if first and not self.live:
                raise SourceError(f"{self.name}: cannot open as video (missing, unreadable or unsupported format)")
            return False
        self.capture = capture
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not self.live else 0
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        return True

    def frames(self) -> Iterator[Frame]:
        if self.pipe:
            return self._on_thread()
        return self._frames()

    def _on_thread(self) -> Iterator[Frame]:
        """Open and read the pipe on a thread, decoding each frame there (the next grab
        replaces it); the caller waits in short steps, so a signal stops it at once."""
        frames: queue.Queue = queue.Queue(maxsize=1)
        end = object()

        def put(item: object) -> bool:  # a frame, the error that ended them, or the end
            while not self.stop.is_set():
                try:
                    frames.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                self._open(first=True)
                for frame in self._frames():
                    frame.image   # noqa: B018 (decoded here, before the next grab)
                    if not put(frame):
                        return
            except BaseException as exc:  # handed to the caller, who raises it
                put(exc)
            put(end)

        self.reader = threading.Thread(target=read, name="pipe-reader", daemon=True)
        self.reader.start()
        while not self.stop.is_set():
            try:
                item = frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _frames(self) -> Iterator[Frame]:
        index, backoff, started = 0, Backoff(self.stop), time.monotonic()
        said_down = float("-inf")
        down_since: Optional[float] = None if self.capture is not None else time.monotonic()
        while not self.stop.is_set():
            ok = self.capture is not None and self.capture.grab()
            if ok:
                backoff.reset()
                down_since = None
                if self.live:
                    media_time = time.monotonic() - started
                else:
                    pos = self.capture.get(cv2.CAP_PROP_POS_MSEC)
                    media_time = pos / 1000.0 if pos > 0 or not self.fps else index / self.fps
                yield Frame(index, media_time, load=self._retrieve)
                index += 1
                continue
            if not self.live:
                if index + 2 < self.frame_count:  # a damaged file: kept what was read; frames_forever says so
                    self.ended_early = (f"{self.name} ended after {index} of the {self.frame_count} frames "
                                        "its header announces (damaged or cut short?)")
                return
            if self.capture is not None:
                self.capture.release()
                self.capture = None
                down_since = time.monotonic()
                self.on_event(f"source {self.name} lost; reconnecting with backoff")
            if (self.give_up_after is not None and down_since is not None
                    and time.monotonic() - down_since >= self.give_up_after):
                raise SourceError(f"{self._down()}; gave up after {self.give_up_after:.0f} s, as a run with "
                                  "--max-frames does")
            backoff.wait()
            if self._open():
                self.reconnects += 1
                self.on_event(f"source {self.name} {'reopened' if index else 'opened'}")
            elif time.monotonic() - said_down >= STILL_DOWN_SAY_SECONDS:
                said_down = time.monotonic()
                self.on_event(f"{self.name}: still cannot open; trying every {backoff.cap:.0f} s")

    def _retrieve(self) -> Optional[np.ndarray]:
        """Decode the grabbed frame's pixels (None if the codec cannot)."""
        ok, image = self.capture.retrieve()
        return image if ok else None

    def close(self) -> None:
        if self.reader is not None and self.reader.is_alive():
            return   # still blocked in FFmpeg on the pipe: releasing under it would crash; the process ends it
        if self.capture is not None:
            self.capture.release()


class ImageSource:
    """One image file or a folder of images, in name order."""

    live = False
    fps = None

    def __init__(self, path: str, stop: Optional[threading.Event] = None):
        self.stop = stop or threading.Event()
        if os.path.isdir(path):
            self.paths = sorted(p for p in glob.glob(os.path.join(path, "*")) if is_image_path(p))
            if not self.paths:
                raise SourceError(f"{path}: no images in folder")
        else:
            self.paths = [path]
        self.path = path
        self.unreadable: List[str] = []  # names of the files that could not be decoded

    def frames(self) -> Iterator[Frame]:
        self.unreadable = []
        for index, path in enumerate(self.paths):
            if self.stop.is_set():
                return
            # only a regular file is read: a pipe named x.jpg would block for ever, /dev/zero never end
            image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
            if image is None:
                if len(self.paths) == 1:
                    raise SourceError(f"{path}: not a readable image")
                self.unreadable.append(os.path.basename(path))
                continue
            yield Frame(index, float(index), image)
        if len(self.unreadable) == len(self.paths):
            raise SourceError(f"{self.path}: none of its {len(self.paths)} images could be read")

    def close(self) -> None:
        pass


class PiCameraSource:
    """picamera2: a 640x480 main stream for crops and a 320x240 YUV420 low-res stream
    whose Y plane is a free greyscale image for detection."""

    live = True
    fps = None

    def __init__(self, stop: Optional[threading.Event] = None, size: Tuple[int, int] = (640, 480),
                 lores: Tuple[int, int] = (320, 240)):
        try:
            from picamera2 import Picamera2  # imported only when asked for
        except ImportError:
            raise SourceError("--camera pi needs picamera2: `sudo apt install python3-picamera2` and a venv "
                              "created with --system-site-packages") from None
        self.stop = stop or threading.Event()
        self.camera = Picamera2()
        config = self.camera.create_video_configuration(main={"size": size, "format": "RGB888"},
                                                        lores={"size": lores, "format": "YUV420"})
        self.camera.configure(config)
        self.camera.start()
        self.scale = size[0] / lores[0]
        self.lores_height = lores[1]

    def frames(self) -> Iterator[Frame]:
        index, started = 0, time.monotonic()
        while not self.stop.is_set():
            request = self.camera.capture_request()
            try:
                main = request.make_array("main")   # RGB888 in picamera2 is BGR byte order
                grey = request.make_array("lores")[: self.lores_height]
            finally:
                request.release()
            yield Frame(index, time.monotonic() - started, main, detect_image=grey, detect_scale=self.scale)
            index += 1

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


def open_source(camera: Optional[str] = None, source: Optional[str] = None, stop: Optional[threading.Event] = None,
                on_event: Callable[[str], None] = say, wait: bool = False,
                lean: bool = False, bounded: bool = False) -> Union["OpenCVSource", "ImageSource", "PiCameraSource"]:
    """The source for `--camera N|pi` or `--source FILE|DIR|URL`. A camera that cannot be
    opened is an error unless `wait` (a service waits for its camera, saying so each try);
    a stream URL is waited for, except by a `bounded` run (--max-frames), which gives up
    after BOUNDED_GIVE_UP_SECONDS without a frame. `lean`: a file played at its own rate
    is decoded on one thread, as cheaply as possible rather than as fast."""
    give_up = BOUNDED_GIVE_UP_SECONDS if bounded else None
    if (camera is None) == (source is None):
        raise SourceError("give exactly one of --camera or --source")
    if source is None:   # a camera
        if str(camera).lower() == "pi":
            return PiCameraSource(stop=stop)
        if str(camera).isdigit():
            return OpenCVSource(int(str(camera)), live=True, stop=stop, on_event=on_event, wait=wait, give_up_after=give_up)
        if str(camera).startswith("/dev/video"):
            return OpenCVSource(str(camera), live=True, stop=stop, on_event=on_event, wait=wait, give_up_after=give_up)
        raise SourceError(f"--camera {camera}: expected an index (0), a /dev/video path or 'pi'")
    if str(source).lower().startswith(URL_PREFIXES):
        return OpenCVSource(source, live=True, stop=stop, on_event=on_event, give_up_after=give_up)
    if not os.path.exists(source):
        raise SourceError(f"{source}: no such file or folder")
    if os.path.isdir(source) or is_image_path(source):
        return ImageSource(source, stop=stop)
    return OpenCVSource(source, live=False, stop=stop, on_event=on_event, lean=lean)


def paced(frames: Iterable[Frame], fps_cap: Optional[float] = None, realtime_fps: Optional[float] = None,
          max_frames: Optional[int] = None, stop: Optional[threading.Event] = None) -> Iterator[Frame]:
    """Limit a frame iterator to `max_frames`, at most `fps_cap` frames/s, or at the file's
    own rate (`realtime_fps`) as a camera would deliver it."""
    interval = 1.0 / realtime_fps if realtime_fps else (1.0 / fps_cap if fps_cap else 0.0)
    next_due = time.monotonic()
    for count, frame in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        if interval:
            delay = next_due - time.monotonic()
            if delay > 0:
                if stop is not None and stop.wait(delay):
                    return
                elif stop is None:
                    time.sleep(delay)
            next_due = max(next_due + interval, time.monotonic() - interval)
        yield frame


def frames_forever(open_fn: Callable, loop: bool, stop: threading.Event, first: Any = None,
                   on_event: Callable[[str], None] = say) -> Iterator[tuple]:
    """(source, frame) of a source (`first`, already open, for the first pass); with `loop`
    a file starts again when it ends, its media time carrying on from where the last pass
    ended (sessions and rate limits need a clock that never runs backwards). A file cut
    short is said once, not at every pass; one that yields no frame is not looped."""
    offset = 0.0
    said_early = False
    while not stop.is_set():
        source, first = first or open_fn(), None
        count, last = 0, 0.0
        try:
            for frame in source.frames():
                count += 1
                last = frame.media_time
                frame.media_time += offset
                yield source, frame
        finally:
            source.close()
        if getattr(source, "ended_early", None) and not said_early:
            said_early = True
            on_event(source.ended_early)
        if not loop or source.live or count == 0:
            return
        offset += last + (1.0 / source.fps if source.fps else 0.04)
