"""`fer-edge serve --fleet`: one page over the fleet's database: which devices are up, their
last visit and today's visitors, and the fleet's last 7 days. The device page's rules hold:
loopback only unless a token is given, and the same guards."""

import asyncio
from importlib import resources
from typing import Any, Callable, Optional

from ..fleet.fleet_report import fleet_overview
from ..outputs.fleet_db import DatabaseError
from .device_page import Bursts, Connections, ServerLogFilter, favicon, guards, json_error


def make_fleet_app(target: str, password: Optional[str] = None, token: Optional[str] = None,
                   say: Callable[[str], None] = lambda message: None) -> Any:
    from aiohttp import web

    page = resources.files("fer_edge.web").joinpath("fleet_page.html").read_text()
    connections, bursts = Connections(), Bursts(say)
    ServerLogFilter(bursts).install()

    async def index(request):
        return web.Response(text=page, content_type="text/html")

    async def fleet(request):
        try:
            overview = await asyncio.get_running_loop().run_in_executor(None, fleet_overview, target, password)
        except DatabaseError as exc:
            return json_error(503, str(exc))
        return web.json_response(overview)

    async def healthz(request):
        return web.json_response({"ok": True})

    app = web.Application(middlewares=guards(token, connections, bursts))
    app["connections"] = connections
    app.add_routes([web.get("/", index), web.get("/api/fleet", fleet), web.get("/healthz", healthz),
                    web.get("/favicon.ico", favicon)])
    return app
