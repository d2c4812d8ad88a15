"""A stand-in for picamera2 (no Pi camera exists here), fed from a video file.

It follows picamera2's documented interface for the calls fer-edge makes (the Picamera2
manual, "Configuration" and "Capturing arrays"): `create_video_configuration(main=...,
lores=...)`, `configure`, `start`, `capture_request()` whose `make_array(stream)` gives
an RGB888 stream as an HxWx3 array in BGR byte order and a YUV420 stream as an (H*3/2)xW
array (the Y plane, then U and V), `release`, `stop` and `close`. Like the camera's ISP, it
crops the sensor image (here: the video frame) to each stream's aspect ratio around the
centre and scales it to the stream's size. A request comes when the next frame is due (30
frames/s, the default frame duration of a video configuration). The video restarts when it ends, as a camera
never does. $PICAMERA2_STAND_IN_VIDEO names the video; $PICAMERA2_STAND_IN_LOG, if set,
gets one line per make_array call.
"""

import os
import time

import cv2
import numpy as np


def sensor_view(frame, size):
    """The frame cropped around its centre to the aspect ratio of `size` (w, h), scaled to it."""
    h, w = frame.shape[:2]
    want = size[0] / size[1]
    if w / h > want:
        cw, ch = int(round(h * want)), h
    else:
        cw, ch = w, int(round(w / want))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = frame[y0:y0 + ch, x0:x0 + cw]
    interpolation = cv2.INTER_AREA if cw > size[0] else cv2.INTER_LINEAR
    return cv2.resize(crop, tuple(size), interpolation=interpolation)


def stream_array(frame, stream):
    """What make_array returns for one stream configuration and one sensor frame."""
    view = sensor_view(frame, stream["size"])
    if stream["format"] in ("RGB888", "BGR888"):
        # picamera2's RGB888 is B, G, R in memory: the byte order OpenCV calls BGR.
        return view if stream["format"] == "RGB888" else view[:, :, ::-1].copy()
    if stream["format"] == "YUV420":
        return cv2.cvtColor(view, cv2.COLOR_BGR2YUV_I420)
    raise ValueError(f"format {stream['format']} not provided by this stand-in")


class CompletedRequest:
    def __init__(self, frame, config):
        self._frame, self._config, self.released = frame, config, False

    def make_array(self, name):
        if self.released:
            raise RuntimeError("make_array after release")
        log = os.environ.get("PICAMERA2_STAND_IN_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"make_array {name}\n")
        return stream_array(self._frame, self._config[name])

    def release(self):
        self.released = True


class Picamera2:
    def __init__(self, camera_num=0):
        self._video = os.environ["PICAMERA2_STAND_IN_VIDEO"]
        self._capture = None
        self._config = None
        self.started = False

    def create_video_configuration(self, main=None, lores=None, **kwargs):
        config = {"use_case": "video", "controls": {"FrameDurationLimits": (33333, 33333)},
                  "main": dict({"format": "XBGR8888", "size": (1280, 720)}, **(main or {}))}
        if lores is not None:
            config["lores"] = dict({"format": "YUV420", "size": (320, 240)}, **lores)
        return config

    def configure(self, config):
        self._config = config

    def start(self):
        if self._config is None:
            raise RuntimeError("Camera must be configured before starting")
        self._capture = cv2.VideoCapture(self._video)
        if not self._capture.isOpened():
            raise RuntimeError(f"stand-in video {self._video} cannot be opened")
        self.started = True
        self._due = time.monotonic()

    def capture_request(self):
        if not self.started:
            raise RuntimeError("Camera is not running")
        self._due += self._config["controls"]["FrameDurationLimits"][0] / 1e6
        time.sleep(max(0.0, self._due - time.monotonic()))
        ok, frame = self._capture.read()
        if not ok:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        return CompletedRequest(np.ascontiguousarray(frame), self._config)

    def stop(self):
        self.started = False

    def close(self):
        if self._capture is not None:
            self._capture.release()
