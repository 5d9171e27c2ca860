"""The web UI's files and its live stream over HTTP (the browser tests in tests/ui/ use
them through a page): types, the Content-Security-Policy, JSON 404s, /events."""

from __future__ import annotations

import base64
import json
import logging

import aiohttp

from chargebrain.api.auth import set_admin_password
from tests.conftest import Running


async def test_page_and_modules(running: Running, http: aiohttp.ClientSession) -> None:
    async with http.get(running.base_url + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert '<script type="module" src="/ui/app.js">' in await resp.text()
    for path, ctype in (("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"),
                        ("/ui/vendor/uPlot.esm.js", "text/javascript"),
                        ("/ui/icon.svg", "image/svg+xml")):
        async with http.get(running.base_url + path) as resp:
            assert resp.status == 200, path
            assert resp.content_type == ctype, path


async def test_missing_or_outside_files_are_json_404(running: Running,
                                                     http: aiohttp.ClientSession) -> None:
    for path in ("/ui/nothing.js", "/ui/%2e%2e/api/server.py", "/ui/vendor",
                 "/ui/vendor/uPlot.LICENSE.txt/x"):
        async with http.get(running.base_url + path) as resp:
            assert resp.status == 404, path
            assert "error" in await resp.json()


async def test_events_stream_dev_info_after_cycles(running: Running,
                                                   http: aiohttp.ClientSession) -> None:
    async with http.get(running.base_url + "/events") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        await running.app.manager.wait_cycle()
        name, data = "", ""
        while name != "devinfo" or not data:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name, data = line[7:], ""
            elif line.startswith("data: "):
                data = line[6:]
        info = json.loads(data)
        assert {"params", "devices", "loadmgr_disabled"} <= set(info)


async def test_the_log_stream_needs_the_admin(running: Running,
                                              http: aiohttp.ClientSession) -> None:
    set_admin_password(running.app.store, "pw-of-the-admin")
    async with http.get(running.base_url + "/events?log=1") as resp:
        assert resp.status == 401
        assert "error" in await resp.json()
    token = base64.b64encode(b"admin:pw-of-the-admin").decode()
    async with http.get(running.base_url + "/events?log=1",
                        headers={"Authorization": f"Basic {token}"}) as resp:
        assert resp.status == 200
        logging.getLogger("chargebrain.test").warning("a line for the live log")
        seen = ""
        while "a line for the live log" not in seen:
            seen = (await resp.content.readline()).decode()
        assert '"level":"WARNING"' in seen
