"""kame's web page: `/` and `/static/*`, package data under `static/` (no CDN, no download)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

STATIC = Path(__file__).with_name("static")

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?")
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def headers(request: web.Request) -> dict[str, str]:
    """The page loads only its own files and opens only its own WebSocket; nothing else may run in
    it, and no other site may frame it. Its WebSocket is named in full: older browsers' `'self'`
    does not cover ws: and wss:."""
    host = request.host if _HOST.fullmatch(request.host) else ""  # the client names it: no ';' in it
    ws = f" {'wss' if request.secure else 'ws'}://{host}" if host else ""
    policy = (
        f"default-src 'self'; connect-src 'self'{ws}; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return {**_HEADERS, "Content-Security-Policy": policy}


def add_routes(app: web.Application) -> None:
    from aiohttp import web

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=headers(request))

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        # Only the page's own files, by their plain names (no folders, no dot-files).
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=headers(request))

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", asset)
