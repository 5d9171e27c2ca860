"""The web UI's files: `GET /` (the page) and `GET /ui/<path>` (its modules, styles,
vendored libraries), from the package folder `chargebrain/ui/`.

Every answer carries a Content-Security-Policy that lets the page load and connect to
this server only (`'self'`), so nothing the UI does reaches another machine, and no
inline script runs. A path outside the folder, a folder or a missing file is the
usual JSON 404. Files are sent with `Cache-Control: no-cache` (the browser asks again
and gets 304 while a file is unchanged), so an update shows at the next load.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
         ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json",
         ".txt": "text/plain", ".ico": "image/x-icon", ".webmanifest": "application/manifest+json"}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(relative: str) -> web.StreamResponse:
    root = UI_DIR.resolve()
    path = (root / relative).resolve()
    ctype = TYPES.get(path.suffix.lower())
    if not path.is_relative_to(root) or not path.is_file() or ctype is None:
        raise web.HTTPNotFound()
    response = web.FileResponse(path, headers=HEADERS)
    response.content_type = ctype
    if ctype.startswith("text/") or ctype == "application/json":
        response.charset = "utf-8"
    return response


async def handle_index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


async def handle_ui_file(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["path"])
