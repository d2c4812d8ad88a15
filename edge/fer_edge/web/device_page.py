"""`fer-edge serve`: a small local web page and JSON API beside the camera loop (aiohttp).

    GET  /               the page: live view, today's visitors, try a photo
    GET  /live.mjpg      the annotated camera stream (MJPEG, at most --live-fps frames/s)
    GET  /api/status     fps, faces, current tracks with their emotions
    GET  /api/report     the numbers of `fer-edge report` (?since=today&by=hour)
    GET  /api/visits     the newest finished visits (?limit=20)
    POST /api/analyze    a JPEG/PNG photo -> every face with box, emotion and its probabilities
    GET  /openapi.json   the API description;  GET /healthz  for monitors (no token needed)

aiohttp is an optional extra (`pip install 'fer-edge[web]'`): the device runs without it.
It runs in its own thread with its own event loop; drawing and JPEG encoding happen there,
in an executor, only while someone watches.
"""

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import stat
import threading
import time
import unicodedata
from collections import defaultdict, deque
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Sequence, Tuple
from importlib import resources

import cv2
import numpy as np

from ..kiosk.drawing import draw
from ..core.errors import UserError
from ..core.network import Network, client_address, within
from .image_header import ImageHeaderError, image_size
from ..core.labels import palette
from ..outputs.visit_report import PERIODS, build_report, empty_report, parse_since, recent_visits

try:
    from aiohttp import web
except ImportError:  # an optional extra: `serve` says how to install it
    web = None  # type: ignore[assignment]

ALLOWED_TYPES = ("image/jpeg", "image/png")
MAX_PIXELS = 40_000_000      # an upload larger than this is refused before it is decoded
HEADER_SECONDS = 10.0        # a connection must send a request within this
KEEPALIVE_SECONDS = 15.0     # an idle kept-alive connection is closed after this
MAX_CONNECTIONS = 200        # beyond this, the oldest connection without a token is closed, else 503
PER_CLIENT = 50              # connections one address may hold open at once
BODY_SECONDS = 20.0          # an upload must arrive whole within this
MIN_TOKEN_CHARS = 16         # a shorter token can be guessed
MIN_TOKEN_DISTINCT = 5       # a token of fewer different characters (aaaa..., abab...) can be guessed
MIN_TOKEN_BITS = 30.0        # its characters' spread over the token: a random 16-hex token has more
FAILED_TOKENS_PER_MINUTE = 10  # wrong tokens from one address beyond this get 429 for the rest of the minute
BURST_SECONDS = 10.0         # problems of the same kind are said at most once per this
OPEN_PATHS = ("/healthz", "/favicon.ico")  # answered without the token


def decode(data: bytes) -> Optional[np.ndarray]:
    """BGR pixels of a JPEG/PNG whose size was checked (cv2.error on a damaged one is None)."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


class WebError(UserError):
    pass


LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback_name(host: str) -> bool:
    """A Host header naming this machine's loopback: without a DNS lookup (rebinding)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


class Bursts:
    """Says a kind of problem once per BURST_SECONDS, with how many there were: a flood of
    bad requests is a few lines in the journal, not thousands."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.counts: Dict[str, int] = defaultdict(int)
        self.said: Dict[str, float] = {}

    def add(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self.said.get(kind, float("-inf")) >= BURST_SECONDS:
            self.said[kind] = now
            count, self.counts[kind] = self.counts[kind], 0
            self.say(f"web: {text}" + (f" ({count} since the last line)" if count > 1 else ""))


class ServerLogFilter(logging.Filter):
    """aiohttp's own log lines about bad requests carry tracebacks and the raw request line,
    which may hold the page's token: none of them reach the log; a counted line per burst does."""

    LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "aiohttp.websocket")

    def __init__(self, bursts: Bursts):
        super().__init__()
        self.bursts = bursts

    def filter(self, record: logging.LogRecord) -> bool:
        self.bursts.add("malformed", "malformed or broken requests refused (details are not logged)")
        return False

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)


class FailedTokens:
    """Wrong tokens per client address over the last minute: brute force is answered with 429."""

    def __init__(self, limit: int = FAILED_TOKENS_PER_MINUTE):
        self.limit = limit
        self.failures: Dict[str, Deque[float]] = defaultdict(deque)

    def _recent(self, address: str) -> Deque[float]:
        times, now = self.failures[address], time.monotonic()
        while times and now - times[0] > 60.0:
            times.popleft()
        if not times:
            self.failures.pop(address, None)
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self.failures[address].append(time.monotonic())


def token_bits(token: str) -> float:
    """The token's length times the entropy of its characters' frequencies: 0 for one repeated
    character, about 4 bits a character for random hex."""
    counts = [token.count(c) for c in set(token)]
    return -sum(n * math.log2(n / len(token)) for n in counts)


def is_a_run(token: str) -> bool:
    """abcdef..., 0123456789abcdef0123..., zyxw...: at most two different steps between
    neighbours, or one step between three neighbours in four."""
    steps = [ord(b) - ord(a) for a, b in zip(token, token[1:])]
    return len(set(steps)) <= 2 or max(steps.count(step) for step in set(steps)) * 4 >= len(steps) * 3


def is_repeated(token: str) -> bool:
    """qwertyqwertyqwerty: a short part said again and again."""
    return (token + token).find(token, 1) < len(token)


def unsendable(token: str) -> bool:
    """A space, line break or control character: a header cannot carry it as typed (a second
    line in the file is a note or another token, not part of this one)."""
    return any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in token)


def with_period_starts(report: dict) -> dict:
    """Each period's first moment as unix time: its key is on the device's clock, and the page
    places it on the viewer's, whatever time zone each keeps."""
    for period in report["periods"]:
        period["start"] = time.mktime(time.strptime(period["period"], PERIODS[report["by"]]))
    return report


def check_token(token: Optional[str], token_file: Optional[str] = None,
                say: Callable[[str], None] = lambda message: None) -> None:
    """A token must be long enough and random enough not to be guessed; its file should be private."""
    example = "(for example: openssl rand -hex 16 > FILE)"
    if token and len(token) < MIN_TOKEN_CHARS:
        raise WebError(f"the page's token has {len(token)} characters: use at least {MIN_TOKEN_CHARS} {example}")
    if token and (len(set(token)) < MIN_TOKEN_DISTINCT or token_bits(token) < MIN_TOKEN_BITS):
        raise WebError(f"the page's token is too easy to guess ({len(set(token))} different characters in "
                       f"{len(token)}, mostly repeated): use a random one {example}")
    if token and unsendable(token):
        raise WebError("the page's token holds a space, line break or control character, which a request "
                       f"cannot carry as typed: put one token on one line {example}")
    if token and is_a_run(token):
        raise WebError(f"the page's token is too easy to guess (a run like abcd or 1234): use a random one {example}")
    if token and is_repeated(token):
        raise WebError(f"the page's token is too easy to guess (a short part repeated): use a random one {example}")
    if token and token_file and os.stat(token_file).st_mode & (stat.S_IRGRP | stat.S_IROTH):
        say(f"{token_file} is readable by other users: chmod 600 {token_file}")


def _token_text(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise WebError(f"{path}: the token file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_token(token_file: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    environ = os.environ if environ is None else environ
    if token_file:
        token = _token_text(token_file)
        if not token:
            raise WebError(f"{token_file}: the token file is empty")
        return token
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if creds and os.path.exists(os.path.join(creds, "web-token")):
        return _token_text(os.path.join(creds, "web-token")) or None
    return environ.get("FER_EDGE_WEB_TOKEN") or None


class PhotoAnalyzer:
    """Photo uploads: their own FaceAnalyzer (not the camera loop's), one photo at a time."""

    def __init__(self, analyzer: Any):
        self.analyzer = analyzer
        self.lock = threading.Lock()

    @property
    def labels(self) -> Tuple[str, ...]:
        return self.analyzer.labels

    def analyze(self, image: np.ndarray) -> dict:
        with self.lock:
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


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="15" fill="#2e7d32"/>'
           '<circle cx="11" cy="12" r="2.5" fill="#fff"/><circle cx="21" cy="12" r="2.5" fill="#fff"/>'
           '<path d="M9 19q7 7 14 0" stroke="#fff" stroke-width="2.5" fill="none"/></svg>')


def page_html(max_upload: int, labels: Sequence[str]) -> str:
    """The page, with the model's labels, their colours and the upload limit the server really uses."""
    page = resources.files("fer_edge.web").joinpath("web_page.html").read_text()
    return (page.replace("/*COLOURS*/{}", json.dumps(palette(labels)))
                .replace("/*LABELS*/[]", json.dumps(list(labels)))
                .replace("{{MAX_MB}}", f"{max_upload / (1024 * 1024):g}"))


async def favicon(request: Any) -> Any:
    """Every page's icon (answered without the token)."""
    return web.Response(text=FAVICON, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def json_error(status: int, message: str) -> Any:
    return web.json_response({"error": message}, status=status)


def guards(token: Optional[str], connections: "Connections", bursts: Bursts) -> list:
    """The middlewares every page of fer-edge's shares: same origin, and the token (a wrong one
    closes the connection; too many from one address get 429 for the rest of the minute)."""
    failed_tokens = FailedTokens()
    @web.middleware
    async def same_origin(request, handler):
        """No cross-site POSTs, and on loopback no foreign Host (DNS rebinding): a page in a
        browser on the device cannot drive the API."""
        if request.transport is not None:
            connections.request_started(request.transport)
            client = connections.client(request.transport, ", ".join(request.headers.getall("X-Forwarded-For", [])))
            if connections.over_share(request.transport):
                bursts.add("crowded", f"more than {connections.per_client} connections from {client} "
                                      "behind a proxy: answering 503")
                response = json_error(503, "too many connections from your address")
                response.force_close()
                return response
        host = request.host.rsplit(":", 1)[0].strip("[]") if request.host else ""
        if not token and host and not is_loopback_name(host):
            return json_error(403, f"Host {request.host!r} is not this device's loopback name: open http://127.0.0.1:PORT/")
        origin = request.headers.get("Origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if origin == "null" or origin.split("://", 1)[-1] != request.host:
                return json_error(403, f"cross-site request from {origin} refused")
        return await handler(request)

    @web.middleware
    async def auth(request, handler):
        """A wrong token closes the connection (it cannot sit in the pool); too many from one
        address get 429 for the rest of the minute."""
        if token and request.path not in OPEN_PATHS:
            address = connections.address_of(request.transport) if request.transport else request.remote or "?"
            if failed_tokens.blocked(address):
                bursts.add("limited", f"too many wrong tokens from {address}: answering 429")
                response = json_error(429, "too many wrong tokens: wait a minute")
                response.force_close()
                return response
            given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                failed_tokens.failed(address)
                bursts.add("wrong token", f"requests without the right token from {address}")
                response = json_error(401, "a token is required: ?token=... or Authorization: Bearer ...")
                response.force_close()
                return response
        if request.transport is not None and (token is None or request.path not in OPEN_PATHS):
            connections.authenticated(request.transport)
        return await handler(request)

    return [same_origin, auth]


class DevicePage:
    """The device page's handlers, over what the composition root gives it. `live` None: no
    camera (photos, the report and the visits only); `info` names the device, model and
    detector then."""

    def __init__(self, live: Optional[Any], analyzer: Any, db_path: Optional[str], max_upload: int, live_fps: float,
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



def make_app(live: Optional[Any], analyzer: Any, db_path: Optional[str], token: Optional[str] = None,
             max_upload: int = 10 * 1024 * 1024, live_fps: float = 5.0, info: Optional[dict] = None,
             say: Callable[[str], None] = lambda message: None) -> Any:
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


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    return peer[0] if peer else "?"


class Connections:
    """One server's open connections: at most `cap`, and each must send its first request
    within HEADER_SECONDS, so idle or slow connections cannot use up the process's open
    files and lock the page out. One address holds at most `per_client` of them. At the cap a
    new connection takes the place of the oldest one that has not shown the token: strangers
    cannot starve the token holder. Behind a trusted proxy (`proxies`) the address that
    counts is the client's its X-Forwarded-For names, known once a request arrives."""

    def __init__(self, cap: int = MAX_CONNECTIONS, per_client: int = PER_CLIENT, proxies: Sequence[Network] = ()):
        self.cap, self.per_client = cap, per_client
        self.proxies = list(proxies)
        self.open: Dict[Any, Optional[float]] = {}  # transport -> monotonic time it opened, None once a request started
        self.trusted: set = set()  # transports that made a request with the token (or with none needed)
        self.client_of: Dict[Any, str] = {}  # transport -> the client a trusted proxy forwarded it for

    def request_started(self, transport: Any) -> None:
        if transport in self.open:
            self.open[transport] = None

    def authenticated(self, transport: Any) -> None:
        if transport in self.open:
            self.trusted.add(transport)

    def admit(self, transport: Any) -> bool:
        """Room for a new connection: under its address's share, and under the cap or by
        closing the oldest connection without the token."""
        address = _peer(transport)
        if not within(address, self.proxies) and sum(1 for t in self.open if _peer(t) == address) >= self.per_client:
            return False
        return self.make_room()

    def client(self, transport: Any, forwarded_for: Optional[str]) -> str:
        """Who the connection's request is from (core.network.client_address), noted for the limits."""
        peer = _peer(transport)
        client = client_address(peer, forwarded_for, self.proxies)
        if within(peer, self.proxies) and transport in self.open:
            self.client_of[transport] = client
        return client

    def address_of(self, transport: Any) -> str:
        return self.client_of.get(transport) or _peer(transport)

    def over_share(self, transport: Any) -> bool:
        """A client behind a trusted proxy holds more than its share of connections."""
        client = self.client_of.get(transport)
        return client is not None and sum(1 for c in self.client_of.values() if c == client) > self.per_client

    def make_room(self) -> bool:
        """At the cap, close the oldest connection without the token; False when there is none."""
        if len(self.open) < self.cap:
            return True
        strangers = [t for t in self.open if t not in self.trusted]
        if not strangers:
            return False
        oldest = strangers[0]  # dicts keep insertion order: the first opened
        self.open.pop(oldest, None)
        oldest.close()
        return True

    def closed(self, transport: Any) -> None:
        self.open.pop(transport, None)
        self.trusted.discard(transport)
        self.client_of.pop(transport, None)

    def reap(self, deadline: float = HEADER_SECONDS) -> None:
        now = time.monotonic()
        for transport, opened in list(self.open.items()):
            if opened is not None and now - opened > deadline:
                transport.close()


class Guard(asyncio.Protocol):
    """Wraps each connection's aiohttp protocol to keep `Connections`' rules."""

    def __init__(self, inner: Any, connections: Connections):
        self.inner, self.connections = inner, connections
        self.transport = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.connections.admit(transport):
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: 21\r\n\r\ntoo many connections\n")
            transport.close()
            self.inner = None
            return
        self.connections.open[transport] = time.monotonic()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner:
            self.inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return self.inner.eof_received() if self.inner else None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.connections.closed(self.transport)
        if self.inner:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner:
            self.inner.resume_writing()


class WebServer:
    """Runs the app in a background thread with its own event loop."""

    def __init__(self, app: Any, host: str, port: int):
        self.app, self.host, self.port = app, host, port
        self.connections = app["connections"]
        self.loop = asyncio.new_event_loop()
        self.ready, self.error = threading.Event(), None
        self.thread = threading.Thread(target=self._run, name="fer-edge-web", daemon=True)

    async def _reaper(self):
        while True:
            await asyncio.sleep(1.0)
            self.connections.reap()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                    keepalive_timeout=KEEPALIVE_SECONDS)
        try:
            self.loop.run_until_complete(self.runner.setup())
            factory = self.runner.server
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: Guard(factory(), self.connections), self.host, self.port, backlog=128))
            self.port = self.server.sockets[0].getsockname()[1]
        except OSError as exc:
            self.error = exc
            self.ready.set()
            return
        reaper = self.loop.create_task(self._reaper())
        self.ready.set()
        self.loop.run_forever()
        reaper.cancel()
        self.server.close()
        self.loop.run_until_complete(self.runner.cleanup())

    def start(self) -> "WebServer":
        self.thread.start()
        self.ready.wait(30)
        if self.error:
            raise WebError(f"cannot listen on {self.host}:{self.port}: {self.error.strerror or self.error}")
        return self

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def page_url(host: str, port: int) -> str:
    """The page's address (an IPv6 address in brackets)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def start_web(settings: Any, live: Optional[Any], db_path: Optional[str], say: Callable[[str], None],
              photo_analyzer: Callable, device: str) -> WebServer:
    """Start the device page's server thread. `photo_analyzer()` builds the FaceAnalyzer for
    uploaded photos (the composition root knows how)."""

    def make(token):
        web_settings = settings.web
        analyzer = photo_analyzer()
        info = {"device": device, "model": analyzer.classifier.name, "detector": analyzer.detector.name}
        return make_app(live, PhotoAnalyzer(analyzer), db_path, token=token,
                        max_upload=int(web_settings.max_upload_mb * 1024 * 1024), live_fps=web_settings.live_fps,
                        info=info, say=say)

    return serve(settings.web, make, say)


def serve(web_settings: Any, make: Callable[[Optional[str]], Any], say: Callable[[str], None]) -> WebServer:
    """Start a page's server thread (`make(token)` builds its app); beyond loopback only with a token."""
    from ..core.network import parse_networks, split_host_port

    try:
        import aiohttp  # noqa: F401 - an optional extra
    except ImportError:
        raise WebError("the web page needs aiohttp: pip install 'fer-edge[web]'") from None
    host, port = split_host_port(web_settings.listen, None)
    token = read_token(web_settings.token_file)
    check_token(token, web_settings.token_file, say)
    if not is_loopback(host) and not token:
        raise WebError(f"--web {web_settings.listen} listens beyond this machine: give a token with --web-token-file "
                       "FILE or $FER_EDGE_WEB_TOKEN (or listen on 127.0.0.1)")
    app = make(token)
    app["connections"].proxies = parse_networks(web_settings.trusted_proxies or "")
    server = WebServer(app, host, port).start()
    say(f"web page on {page_url(host, server.port)}" + ("?token=..." if token else ""))
    return server
