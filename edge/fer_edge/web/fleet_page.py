"""`fer-edge serve --fleet`: one page over the fleet's database: which devices are up, their
last visit, today's visitors and the model each runs, the rollouts, and the fleet's last 7
days. The device page's rules hold: loopback only unless a token is given, and the same guards."""

import asyncio
import threading
import time
from importlib import resources
from typing import Any, Callable, Optional, Tuple

from ..fleet.fleet_report import fleet_overview
from ..fleet.fleet_db import CONNECT_SECONDS, DatabaseError
from ..core.log import Say
from .server import Bursts, Connections, ServerLogFilter, favicon, guards, json_error

WAIT_SECONDS = 2.0      # a viewer (or a monitor) waits this long for the database, then hears it is away
FRESH_SECONDS = 2.0     # one reading of the database answers every request for this long
GIVE_UP_SECONDS = 2 * CONNECT_SECONDS + 1.0  # a reading still running after this is stuck: the next starts anew
READERS = 4             # reading threads at most: stuck ones cannot pile up


class SharedReading:
    """The fleet's overview, read by one thread at a time for every viewer and kept for
    FRESH_SECONDS: with the database hung, fifty viewers wait WAIT_SECONDS each side by side
    (not in a queue) and the database gets one connection, not fifty. The readers are daemon
    threads: one stuck on a hung server cannot hold up the page's exit."""

    def __init__(self, read: Callable[[], dict]):
        self.read = read
        self.pending: Optional[asyncio.Future] = None
        self.started, self.running = 0.0, 0
        self.last: Optional[Tuple[float, Optional[dict], str]] = None   # (when, overview or None, why not)

    def _read(self) -> Tuple[float, Optional[dict], str]:
        try:
            return time.monotonic(), self.read(), ""
        except DatabaseError as exc:
            return time.monotonic(), None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a row it cannot read is said, not a traceback
            return time.monotonic(), None, f"cannot read the fleet's database ({type(exc).__name__})"

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        future = loop.create_future()

        def finish(result: Tuple[float, Optional[dict], str]) -> None:
            self.running -= 1
            self.last = result
            if not future.done():
                future.set_result(None)
            if self.pending is future:
                self.pending = None

        def run() -> None:
            result = self._read()
            try:
                loop.call_soon_threadsafe(finish, result)
            except RuntimeError:  # the page has stopped
                pass

        self.running += 1
        threading.Thread(target=run, name="fleet-page-read", daemon=True).start()
        return future

    async def get(self) -> dict:
        """The overview, or DatabaseError saying why not (away, refusing, or not answering)."""
        now = time.monotonic()
        if self.last is None or now - self.last[0] >= FRESH_SECONDS:
            stuck = self.pending is not None and now - self.started > GIVE_UP_SECONDS
            if (self.pending is None or stuck) and self.running < READERS:
                self.started = now
                self.pending = self._start(asyncio.get_running_loop())
            if self.pending is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self.pending), WAIT_SECONDS)
                except asyncio.TimeoutError:
                    raise DatabaseError(f"the database did not answer within {WAIT_SECONDS:g} s") from None
        if self.last is None:
            raise DatabaseError(f"the database did not answer within {WAIT_SECONDS:g} s")
        _, overview, why = self.last
        if overview is None:
            raise DatabaseError(why)
        return overview


def make_fleet_app(target: str, password: Optional[str] = None, token: Optional[str] = None,
                   say: Say = lambda message: None) -> Any:
    from aiohttp import web

    page = resources.files("fer_edge.web").joinpath("fleet_page.html").read_text()
    connections, bursts = Connections(), Bursts(say)
    ServerLogFilter(bursts).install()
    reading = SharedReading(lambda: fleet_overview(target, password))

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def fleet(request: web.Request) -> web.Response:
        try:
            overview = await reading.get()
        except DatabaseError as exc:
            return json_error(503, str(exc))
        return web.json_response(overview)

    async def healthz(request: web.Request) -> web.Response:
        """503 while the database is away or hung: a monitor sees what viewers see."""
        try:
            await reading.get()
        except DatabaseError as exc:
            return web.json_response({"ok": False, "problems": [str(exc)]}, status=503)
        return web.json_response({"ok": True, "problems": []})

    app = web.Application(middlewares=guards(token, connections, bursts))
    app["connections"] = connections
    app.add_routes([web.get("/", index), web.get("/api/fleet", fleet), web.get("/healthz", healthz),
                    web.get("/favicon.ico", favicon)])
    return app
