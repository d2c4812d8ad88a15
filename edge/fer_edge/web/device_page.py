"""`fer-edge serve`: a small local web page and JSON API beside the camera loop (aiohttp).

    GET  /               the page: live view, today's visitors, try a photo
    GET  /live.mjpg      the annotated camera stream (MJPEG, at most --live-fps frames/s)
    GET  /api/status     fps, faces, current tracks with their emotions
    GET  /api/report     the numbers of `fer-edge report` (?since=today&by=hour)
    GET  /api/visits     the newest finished visits (?limit=20)
    POST /api/analyze    a JPEG/PNG photo -> every face with box, emotion and its probabilities
    GET  /openapi.json   the API description;  GET /healthz  for monitors (no token needed)

aiohttp is an optional extra (`pip install 'fer-edge[web]'`): the device runs without it.
The page runs on `server.py`'s thread, guards and connection limits, in its own event loop; drawing and JPEG encoding happen there,
in an executor, only while someone watches.
"""

import asyncio
import json
import os
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..core.labels import palette
from ..core.log import Say
from ..core.settings_sections import WebSection
from ..kiosk.drawing import draw
from ..fleet.visit_report import PERIODS, build_report, empty_report, parse_since, recent_visits
from .image_header import ImageHeaderError, image_size
from .server import Bursts, Connections, ServerLogFilter, WebServer, favicon, guards, json_error, serve

if TYPE_CHECKING:  # for the hints only
    from ..kiosk.live import LiveState
    from ..vision.analyzer import FaceAnalyzer

try:
    from aiohttp import web
except ImportError:  # an optional extra: `serve` says how to install it
    web = None  # type: ignore[assignment]

ALLOWED_TYPES = ("image/jpeg", "image/png")
MAX_PIXELS = 40_000_000      # an upload larger than this is refused before it is decoded
BODY_SECONDS = 20.0          # an upload must arrive whole within this


def decode(data: bytes) -> Optional[np.ndarray]:
    """BGR pixels of a JPEG/PNG whose size was checked (cv2.error on a damaged one is None)."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def with_period_starts(report: dict) -> dict:
    """Each period's first moment as unix time: its key is on the device's clock, and the page
    places it on the viewer's, whatever time zone each keeps."""
    for period in report["periods"]:
        period["start"] = time.mktime(time.strptime(period["period"], PERIODS[report["by"]]))
    return report


class PhotoAnalyzer:
    """Photo uploads: their own FaceAnalyzer (not the camera loop's), one photo at a time, on
    the model the camera loop runs: a model deployed while the page runs reads the next photo."""

    def __init__(self, build: "Callable[[], FaceAnalyzer]", model_now: Callable[[], Optional[str]] = lambda: None):
        """`build()`: a FaceAnalyzer on the camera loop's model now; `model_now()`: that model's file."""
        self.build, self.model_now = build, model_now
        self.built_for = model_now()
        self.analyzer = build()
        self.lock = threading.Lock()

    def _follow(self) -> None:
        now = self.model_now()
        if now != self.built_for:
            self.analyzer, self.built_for = self.build(), now

    @property
    def labels(self) -> Tuple[str, ...]:
        with self.lock:
            self._follow()
            return self.analyzer.labels

    def analyze(self, image: np.ndarray) -> dict:
        with self.lock:
            self._follow()
            faces = self.analyzer.analyze(image)
        return {"width": int(image.shape[1]), "height": int(image.shape[0]),
                "faces": [face.describe() for face in sorted(faces, key=lambda f: f.detection.x)]}


def openapi(max_upload: int) -> dict:
    ok = {"200": {"description": "OK", "content": {"application/json": {}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "fer-edge", "version": "1", "description": "Local API of a fer-edge sensor."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/status": {"get": {"summary": "fps, faces and current tracks", "responses": ok}},
            "/api/report": {"get": {"summary": "visitor sessions per hour or day", "parameters": [
                {"name": "since", "in": "query", "schema": {"type": "string", "default": "today"}},
                {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["hour", "day"]}}], "responses": ok}},
            "/api/analyze": {"post": {
                "summary": f"faces and emotions of a JPEG or PNG photo (at most {max_upload // (1024 * 1024)} MB)",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "photo": {"type": "string", "format": "binary"}}}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": dict(ok, **{"400": {"description": "not a JPEG/PNG image, or empty"},
                                         "413": {"description": "too large"},
                                         "415": {"description": "wrong content type"}})}},
            "/api/visits": {"get": {"summary": "the newest finished visits, newest first", "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 20, "minimum": 1,
                                                            "maximum": 500}}], "responses": ok}},
            "/live.mjpg": {"get": {"summary": "annotated camera stream (multipart/x-mixed-replace)",
                                   "responses": {"200": {"description": "MJPEG stream"}}}},
            "/healthz": {"get": {"summary": "health of every worker: 200, or 503 with the problems (no token needed)",
                                 "security": [], "responses": ok}},
        },
    }


def page_html(max_upload: int, labels: Sequence[str]) -> str:
    """The page, with the model's labels, their colours and the upload limit the server really uses."""
    page = resources.files("fer_edge.web").joinpath("web_page.html").read_text()
    return (page.replace("/*COLOURS*/{}", json.dumps(palette(labels)))
                .replace("/*LABELS*/[]", json.dumps(list(labels)))
                .replace("{{MAX_MB}}", f"{max_upload / (1024 * 1024):g}"))


class DevicePage:
    """The device page's handlers, over what the composition root gives it. `live` None: no
    camera (photos, the report and the visits only); `info` names the device, model and
    detector then."""

    def __init__(self, live: "Optional[LiveState]", analyzer: PhotoAnalyzer, db_path: Optional[str], max_upload: int, live_fps: float,
                 info: Optional[dict], bursts: "Bursts"):
        self.live, self.analyzer, self.db_path = live, analyzer, db_path
        self.max_upload, self.live_fps, self.bursts = max_upload, live_fps, bursts
        self.page = page_html(max_upload, analyzer.labels)
        self.no_camera = dict(info or {}, state="photos only", camera=False, frames=0, fps=0.0, faces=0, people=0,
                              visits=[], tracks=[], last_frame_seconds=None)
        self.executor = None    # the loop's default executor
        self.streams: set = set()  # the running /live.mjpg handlers

    def routes(self) -> list:
        return [web.get("/", self.index), web.get("/healthz", self.healthz), web.get("/api/status", self.status),
                web.get("/api/report", self.report), web.post("/api/analyze", self.analyze),
                web.get("/live.mjpg", self.mjpeg), web.get("/openapi.json", self.openapi_json),
                web.get("/api/visits", self.visits), web.get("/favicon.ico", favicon)]

    async def index(self, request: Any) -> Any:
        return web.Response(text=self.page, content_type="text/html")

    async def healthz(self, request: Any) -> Any:
        """503 with the reasons while any worker is unwell: a monitor sees a stalled camera or a dead sender."""
        problems = self.live.problems() if self.live else []
        return web.json_response({"ok": not problems, "problems": problems,
                                  "frames": self.live.status()["frames"] if self.live else None}, status=503 if problems else 200)

    async def status(self, request: Any) -> Any:
        return web.json_response(self.live.status() if self.live else self.no_camera)

    async def visits(self, request: Any) -> Any:
        try:
            limit = int(request.query.get("limit", "20"))
            if not 1 <= limit <= 500:
                raise ValueError
        except ValueError:
            return json_error(400, "limit: expected a whole number from 1 to 500")
        if not self.db_path or not os.path.exists(self.db_path):
            return web.json_response({"visits": []})
        loop = asyncio.get_running_loop()
        return web.json_response({"visits": await loop.run_in_executor(self.executor, recent_visits, self.db_path, limit)})

    async def report(self, request: Any) -> Any:
        try:
            since = parse_since(request.query.get("since", "today"))
            by = request.query.get("by", "hour")
            if by not in ("hour", "day"):
                raise ValueError("by: expected hour or day")
        except ValueError as exc:
            return json_error(400, str(exc))
        if not self.db_path or not os.path.exists(self.db_path):
            return web.json_response(empty_report(since, by))
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(self.executor, build_report, self.db_path, since, by)
        return web.json_response(with_period_starts(report))

    async def within_deadline(self, reading: Any) -> Any:
        try:
            return await asyncio.wait_for(reading, BODY_SECONDS)
        except asyncio.TimeoutError:
            self.bursts.add("slow upload", f"uploads slower than {BODY_SECONDS:.0f} s closed")
            return TOO_SLOW

    async def analyze(self, request: Any) -> Any:
        if request.content_length is not None and request.content_length > self.max_upload + 64 * 1024:
            return json_error(413, f"file too large: at most {self.max_upload // (1024 * 1024)} MB")
        data, kind = None, request.content_type
        if kind == "multipart/form-data":
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and part.name != "photo":
                part = await reader.next()
            if part is None:
                return json_error(400, "no 'photo' field in the form")
            kind = part.headers.get("Content-Type", "")
            data = await self.within_deadline(part.read(decode=False))
        elif kind in ALLOWED_TYPES:
            data = await self.within_deadline(request.read())
        if data is TOO_SLOW:
            response = json_error(408, f"the upload did not arrive within {BODY_SECONDS:.0f} s")
            response.force_close()
            return response
        if kind not in ALLOWED_TYPES:
            return json_error(415, f"unsupported content type {kind or 'none'!r}: send a JPEG or PNG photo")
        if not data:
            return json_error(400, "empty file: send a JPEG or PNG photo")
        if len(data) > self.max_upload:
            return json_error(413, f"file too large: at most {self.max_upload // (1024 * 1024)} MB")
        try:
            _, width, height = image_size(data)
        except ImageHeaderError as exc:
            return json_error(400, f"{exc}: send a JPEG or PNG photo")
        if width * height > MAX_PIXELS:
            return json_error(413, f"image too large: {width}x{height} pixels, at most {MAX_PIXELS // 1_000_000} megapixels")
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(self.executor, decode, data)
        if image is None:
            return json_error(400, "not a readable JPEG or PNG image")
        loop = asyncio.get_running_loop()
        return web.json_response(await loop.run_in_executor(self.executor, self.analyzer.analyze, image))

    @staticmethod
    def encode(frame: np.ndarray, tracks: list) -> Optional[bytes]:
        ok, jpeg = cv2.imencode(".jpg", draw(frame, tracks), [cv2.IMWRITE_JPEG_QUALITY, 75])
        return jpeg.tobytes() if ok else None

    async def mjpeg(self, request: Any) -> Any:
        if self.live is None:
            return json_error(404, "no camera: start fer-edge serve with --camera or --source")
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        self.live.viewers += 1
        self.streams.add(asyncio.current_task())
        last_seq, interval = -1, 1.0 / self.live_fps
        try:
            while True:
                started = time.monotonic()
                seq, frame, tracks = self.live.snapshot()
                if frame is not None and seq != last_seq:
                    jpeg = await loop.run_in_executor(self.executor, self.encode, frame, tracks)
                    if jpeg:
                        await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                             % len(jpeg) + jpeg + b"\r\n")
                    last_seq = seq
                await asyncio.sleep(max(0.01, interval - (time.monotonic() - started)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.live.viewers -= 1
            self.streams.discard(asyncio.current_task())
        return response

    async def close_streams(self, app: Any) -> None:
        # A stream never ends by itself: without this, shutdown waits for every viewer's
        # connection until the server's timeout, and `fer-edge serve` takes that long to stop.
        for task in list(self.streams):
            task.cancel()

    async def openapi_json(self, request: Any) -> Any:
        return web.json_response(openapi(self.max_upload))



def make_app(live: "Optional[LiveState]", analyzer: PhotoAnalyzer, db_path: Optional[str], token: Optional[str] = None,
             max_upload: int = 10 * 1024 * 1024, live_fps: float = 5.0, info: Optional[dict] = None,
             say: Say = lambda message: None) -> Any:
    """The device page's app: its handlers behind the guards every page shares."""
    connections, bursts = Connections(), Bursts(say)
    ServerLogFilter(bursts).install()
    page = DevicePage(live, analyzer, db_path, max_upload, live_fps, info, bursts)
    app = web.Application(middlewares=guards(token, connections, bursts), client_max_size=max_upload + 256 * 1024)
    app.on_shutdown.append(page.close_streams)
    app["connections"] = connections
    app.add_routes(page.routes())
    return app


TOO_SLOW = object()  # what a body read that missed its deadline returns


def start_web(web_settings: WebSection, live: "Optional[LiveState]", db_path: Optional[str], say: Say,
              photo_analyzer: "Callable[[], FaceAnalyzer]", device: str,
              model_now: Callable[[], Optional[str]] = lambda: None) -> WebServer:
    """Start the device page's server thread. `photo_analyzer()` builds the FaceAnalyzer for
    uploaded photos (the composition root knows how) on the camera loop's model, whose file
    `model_now()` names."""

    def make(token: Optional[str]) -> Any:
        photos = PhotoAnalyzer(photo_analyzer, model_now)
        analyzer = photos.analyzer
        info = {"device": device, "model": analyzer.classifier.name, "detector": analyzer.detector.name}
        return make_app(live, photos, db_path, token=token,
                        max_upload=int(web_settings.max_upload_mb * 1024 * 1024), live_fps=web_settings.live_fps,
                        info=info, say=say)

    return serve(web_settings, make, say)
