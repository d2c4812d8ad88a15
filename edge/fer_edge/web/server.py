"""The server under every page of fer-edge (`serve` and `serve --fleet`): who may connect
and ask, and the thread that runs a page's app.

Without a token a page listens on loopback only and answers only Hosts that name loopback
(no DNS rebinding); with one, the token must be long and random enough, a wrong one closes
the connection, and too many wrong ones from an address get 429. The connections are capped
(per address too, behind a trusted proxy per forwarded client) and must speak within
HEADER_SECONDS. aiohttp's own log lines, which may carry the token, are replaced by a
counted line per burst. The rules on tokens and loopback live in `access`, the pages'
routes in `device_page` and `fleet_page`.
"""

import asyncio
import hmac
import logging
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

from .access import FailedTokens, WebError, check_token, is_loopback, is_loopback_name, read_token
from ..core.log import Say
from ..core.network import Network, client_address, parse_networks, split_host_port, within
from ..core.settings_sections import WebSection

if TYPE_CHECKING:  # for the hints only
    from aiohttp.typedefs import Handler

try:
    from aiohttp import web
except ImportError:  # an optional extra: `serve` says how to install it
    web = None  # type: ignore[assignment]

HEADER_SECONDS = 10.0        # a connection must send a request within this
KEEPALIVE_SECONDS = 15.0     # an idle kept-alive connection is closed after this
MAX_CONNECTIONS = 200        # beyond this, the oldest connection without a token is closed, else 503
PER_CLIENT = 50              # connections one address may hold open at once
BURST_SECONDS = 10.0         # problems of the same kind are said at most once per this
OPEN_PATHS = ("/healthz", "/favicon.ico")  # answered without the token


class Bursts:
    """Says a kind of problem once per BURST_SECONDS, with how many there were: a flood of
    bad requests is a few lines in the journal, not thousands."""

    def __init__(self, say: Say):
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


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="15" fill="#2e7d32"/>'
           '<circle cx="11" cy="12" r="2.5" fill="#fff"/><circle cx="21" cy="12" r="2.5" fill="#fff"/>'
           '<path d="M9 19q7 7 14 0" stroke="#fff" stroke-width="2.5" fill="none"/></svg>')



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
    async def same_origin(request: "web.Request", handler: "Handler") -> "web.StreamResponse":
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
    async def auth(request: "web.Request", handler: "Handler") -> "web.StreamResponse":
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



def _peer(transport: asyncio.BaseTransport) -> str:
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
        self.ready = threading.Event()
        self.error: Optional[OSError] = None
        self.thread = threading.Thread(target=self._run, name="fer-edge-web", daemon=True)

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.connections.reap()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                    keepalive_timeout=KEEPALIVE_SECONDS)
        try:
            self.loop.run_until_complete(self.runner.setup())
            factory = self.runner.server
            assert factory is not None   # made by setup()
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


def serve(web_settings: WebSection, make: Callable[[Optional[str]], Any], say: Say) -> WebServer:
    """Start a page's server thread (`make(token)` builds its app); beyond loopback only with a token."""
    try:
        import aiohttp  # noqa: F401 - an optional extra
    except ImportError:
        raise WebError("the web page needs aiohttp: pip install 'fer-edge[web]'") from None
    assert web_settings.listen, "serve needs [web] listen (the command line gives 127.0.0.1:8080)"
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
