"""Authentication and permissions over HTTP: the whole command table, the admin password,
the credential check page, licence and diagnostic logging (guessing: test_guessing.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

import aiohttp

from chargebrain.api import auth
from chargebrain.api.commands import COMMANDS, Permission
from chargebrain.clock import VirtualClock
from chargebrain.store.db import Store
from tests.api.test_sessions import push
from tests.api.test_users import (
    ADMIN,
    ADMIN_PWD,
    add_evse,
    add_user,
    basic,
    call,
    set_password,
)
from tests.conftest import ROOT, Running

PUBLIC_ALWAYS = {"get_dev_info", "get_params", "get_dev_types", "enter_rfid"}


async def status_of(http: aiohttp.ClientSession, running: Running, name: str, query: str,
                    body: object, headers: dict[str, str]) -> int:
    url = running.url(f"cmd={name}{query}")
    if body is None:
        async with http.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status
    async with http.post(url, data=json.dumps(body),
                         headers={"Content-Type": "application/json", **headers}) as resp:
        await resp.read()
        return resp.status


async def test_every_command_answers_by_its_permission(running: Running,
                                                       http: aiohttp.ClientSession) -> None:
    assert {name for name, c in COMMANDS.items() if c.permission is Permission.PUBLIC} >= (
        PUBLIC_ALWAYS)
    await add_evse(http, running, "E2")
    uid = await add_user(http, running, "walker", ["1234"], ["E2"])
    await push(http, running, "E2", 2)
    assert (await call(http, running, "cmd=enter_rfid&rfid=1234"))[0] == 200
    await set_password(http, running)
    # The user's credentials: their user id and the RFID/PIN of their running session.
    user_query = f"&id={uid}&user_id={uid}&rfid=1234&dev_id=E2&flags=c"
    user_body = {"id": uid}
    levels = [
        ("nobody", "", None, {}, Permission.PUBLIC),
        ("user", user_query, user_body, {}, Permission.USER),
        ("admin", user_query, user_body, ADMIN, Permission.ADMIN),
    ]
    wrong: list[str] = []
    for level, query, body, headers, allowed in levels:
        for name in sorted(COMMANDS):
            permission = COMMANDS[name].permission
            status = await status_of(http, running, name, query, body, headers)
            assert status != 500, (level, name)
            if (status == 401) != (permission > allowed):
                wrong.append(f"{level} {name} ({permission.name}): {status}")
    assert not wrong, wrong


async def test_public_commands_ignore_wrong_credentials(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    await set_password(http, running)
    for headers in ({}, basic("admin", "wrong"), basic("someone", ADMIN_PWD),
                    {"Authorization": "Basic !!!notbase64"}, {"Authorization": "Bearer x"}):
        for name in sorted(PUBLIC_ALWAYS - {"enter_rfid"}):
            async with http.get(running.url(f"cmd={name}"), headers=headers) as resp:
                assert resp.status == 200, (name, headers)
                assert resp.content_type == "application/json"
        status, _ = await call(http, running, "cmd=enter_rfid&rfid=1", headers=headers)
        assert status == 403  # unknown card, not 401
    assert (await call(http, running, "cmd=get_devices", headers=ADMIN))[0] == 200
    assert (await call(http, running, "cmd=get_devices", headers=basic("admin", "x")))[0] == 401


async def test_sim_page_checks_the_password(running: Running,
                                            http: aiohttp.ClientSession) -> None:
    url = f"{running.base_url}/ui/en/sim.htm"
    async with http.get(url) as resp:  # no password set: everyone is admin
        assert resp.status == 200
    await set_password(http, running)
    async with http.get(url) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    async with http.get(url, headers=basic("admin", "nope")) as resp:
        assert resp.status == 401
    async with http.get(url, headers=ADMIN) as resp:
        assert resp.status == 200 and "html" in resp.content_type


async def test_change_admin_password(running: Running, http: aiohttp.ClientSession) -> None:
    # Nothing set: old_pwd is empty.
    status, body = await call(http, running, "cmd=change_admin_pwd&old_pwd=x&new_pwd=first")
    assert status == 403
    assert (await call(http, running, "cmd=change_admin_pwd&old_pwd="))[0] == 400
    status, body = await call(http, running, "cmd=change_admin_pwd&old_pwd=&new_pwd=first")
    assert status == 200 and body == "ok"
    stored = running.app.store.get_setting(auth.SETTING)
    assert stored.startswith("scrypt$") and "first" not in stored
    first = basic("admin", "first")
    assert (await call(http, running, "cmd=get_users"))[0] == 401
    assert (await call(http, running, "cmd=get_users", headers=first))[0] == 200
    # The old one must match, even for the admin.
    status, _ = await call(http, running, "cmd=change_admin_pwd&old_pwd=bad&new_pwd=second",
                           headers=first)
    assert status == 403
    status, _ = await call(http, running, "cmd=change_admin_pwd&old_pwd=first&new_pwd=a%0Ab",
                           headers=first)
    assert status == 400
    status, _ = await call(http, running, "cmd=change_admin_pwd&old_pwd=first&new_pwd=second",
                           headers=first)
    assert status == 200
    assert (await call(http, running, "cmd=get_users", headers=first))[0] == 401
    assert (await call(http, running, "cmd=get_users",
                       headers=basic("admin", "second")))[0] == 200


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                 "::ffff:127.0.0.1"):
        assert auth.is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.org", "10.0.0.1"):
        assert not auth.is_loopback(host), host


async def test_license(running: Running, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, running, "cmd=get_license")
    assert body == {"license_accepted": False, "allow_usage_stats": False}
    status, body = await call(http, running, "cmd=accept_license&acc=1&allow_usage_stats=0")
    assert status == 200 and body == {"license_accepted": True, "allow_usage_stats": False}
    status, body = await call(http, running, "cmd=accept_license&acc=1&allow_usage_stats=1")
    assert body == {"license_accepted": True, "allow_usage_stats": True}
    for bad in ("", "&acc=maybe", "&acc=1&allow_usage_stats=2"):
        assert (await call(http, running, "cmd=accept_license" + bad))[0] == 400
    assert (await call(http, running, "cmd=get_license"))[1]["allow_usage_stats"] is True
    await set_password(http, running)
    assert (await call(http, running, "cmd=accept_license&acc=0"))[0] == 401
    assert (await call(http, running, "cmd=get_license"))[0] == 200


async def test_diag_logging_stops_by_itself(virtual: tuple[Running, VirtualClock],
                                            http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    app = running.app
    base = running.url("")
    logger = logging.getLogger("chargebrain")
    level_before = logger.level

    async def get(query: str) -> tuple[int, str]:
        async with http.get(base + query) as resp:
            return resp.status, await resp.text()

    assert (await get("cmd=set_diag_logging"))[0] == 400
    status, text = await get("cmd=set_diag_logging&enable=1")
    assert status == 200 and json.loads(text) == {"enabled": True, "remaining_s": 300}
    assert logger.level == logging.DEBUG
    logging.getLogger("chargebrain.test").debug("a debug line for the record")
    clock.advance(299)
    await asyncio.sleep(0.05)
    assert app.diaglog.enabled
    clock.advance(2)
    for _ in range(50):
        if logger.level == level_before:
            break
        await asyncio.sleep(0.01)
    assert not app.diaglog.enabled and logger.level == level_before
    logging.getLogger("chargebrain.test").debug("after the end")
    async with http.get(base + "cmd=get_diag_log") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        log_text = await resp.text()
    assert "a debug line for the record" in log_text
    assert "after the end" not in log_text
    assert re.search(r"diagnostic logging stopped", log_text)
    # Started again and stopped by hand.
    assert json.loads((await get("cmd=set_diag_logging&enable=1"))[1])["enabled"] is True
    assert json.loads((await get("cmd=set_diag_logging&enable=0"))[1]) == {
        "enabled": False, "remaining_s": 0}
    assert logger.level == level_before


def test_diag_log_is_bounded() -> None:
    from chargebrain.manager.diaglog import DiagLog

    diag = DiagLog(VirtualClock(), logger="chargebrain.bounded", max_lines=50,
                   max_chars=2000)
    diag.start()
    log = logging.getLogger("chargebrain.bounded.x")
    for i in range(500):
        log.debug("line %d %s", i, "x" * 30)
    text = diag.text()
    assert len(text) <= 2000 + 50 and "line 499" in text and "line 10 " not in text
    diag.stop()


def test_docs_list_every_command_with_its_permission() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (PUBLIC|USER|ADMIN) \|", doc, re.M))
    expected = {name: c.permission.name for name, c in COMMANDS.items()}
    table = "\n".join(f"| `{n}` | {p} | {COMMANDS[n].summary} |" for n, p in sorted(
        expected.items()))
    assert rows == expected, f"docs/api.md permission table should read:\n{table}"


def test_the_stored_hash_is_read_again_after_a_second(tmp_path: Path) -> None:
    """The hash is asked for on every request: it is kept for HASH_TTL_S, so a change by
    another process (`chargebrain set-password`) counts within a second, and a change
    through this process at once."""
    store = Store(tmp_path / "a.sqlite")
    other = Store(tmp_path / "a.sqlite")  # another process's connection
    try:
        assert auth.stored_hash(store) == ""
        auth.set_admin_password(other, "elsewhere")
        assert auth.stored_hash(store) == ""  # still the one read a moment ago
        time.sleep(auth.HASH_TTL_S + 0.05)
        assert auth.verify_password(auth.stored_hash(store), "elsewhere")
        auth.set_admin_password(store, "here")
        assert auth.verify_password(auth.stored_hash(store), "here")
    finally:
        store.close()
        other.close()
