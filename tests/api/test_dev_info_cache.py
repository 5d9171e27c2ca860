"""get_dev_info is encoded once while nothing changes (api/dev_info_cache.py): over HTTP,
its bytes are always those of the answer built afresh, for the admin and for anyone else,
after a push, a cycle's new decision, a changed device, a user assignment, a card, a set
soft meter and the clock moving on."""

from __future__ import annotations

import aiohttp

from chargebrain.api import views
from chargebrain.api.answers import json_bytes
from chargebrain.clock import VirtualClock
from tests.api.test_users import ADMIN, add_evse, add_user, call, set_password
from tests.conftest import Running


async def _raw(http: aiohttp.ClientSession, running: Running, admin: bool) -> bytes:
    async with http.get(running.url("cmd=get_dev_info"),
                        headers=ADMIN if admin else None) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        return await resp.read()


def _afresh(running: Running, admin: bool) -> bytes:
    app = running.app

    def user_label(user_id: str) -> str:
        user = app.users.get(user_id)
        return user.name if user is not None and user.display else ""

    viewer = views.Viewer(admin=admin, user_label=user_label)
    return json_bytes(views.dev_info_json(app.manager, app.clock.now(),
                                          app.clock.monotonic(), viewer))


async def _same(http: aiohttp.ClientSession, running: Running) -> None:
    """Twice each (the second from the cache), as the admin and anonymously."""
    for admin in (False, True, False, True):
        assert await _raw(http, running, admin) == _afresh(running, admin)


async def _e2(http: aiohttp.ClientSession, running: Running) -> dict[str, object]:
    _, info = await call(http, running, "cmd=get_dev_info", headers=ADMIN)
    found: dict[str, object] = next(d for d in info["devices"] if d["dev_id"] == "E2")
    return found


async def _push(http: aiohttp.ClientSession, running: Running, query: str) -> None:
    status, body = await call(http, running, f"cmd=set_ajax_evse&dev_id=E2&{query}",
                              headers=ADMIN)
    assert status == 200, body
    await running.app.manager.wait_cycle()


async def test_the_encoded_answer_follows_every_change(
        virtual: tuple[Running, VirtualClock], http: aiohttp.ClientSession) -> None:
    running, clock = virtual
    await set_password(http, running)
    await _same(http, running)
    await add_evse(http, running, "E2", headers=ADMIN)
    await running.app.manager.wait_cycle()
    await _same(http, running)
    assert (await _e2(http, running))["name"] == "Sim-E2"

    await _push(http, running, "state=2")
    await _same(http, running)
    assert (await _e2(http, running))["state"] == 2

    await _push(http, running, "state=3&current=16000,16000,16000")
    await _same(http, running)
    e2 = await _e2(http, running)
    assert e2["state"] == 3 and e2["current_l1"] == 16000
    assert e2["evse"]["current"] > 0  # type: ignore[index]

    status, body = await call(http, running, "cmd=set_params",
                              {"devices": [{"dev_id": "E2", "name": "Garage"}]}, ADMIN)
    assert status == 200, body
    await _same(http, running)
    assert (await _e2(http, running))["name"] == "Garage"

    uid = await add_user(http, running, "alice", ["1234"], ["E2"], headers=ADMIN,
                         display=True)
    await running.app.manager.wait_cycle()
    await _same(http, running)
    assert (await _e2(http, running))["needs_auth"] is True
    status, body = await call(http, running, "cmd=enter_rfid&rfid=1234", headers=ADMIN)
    assert status == 200 and body["authorised"] is True
    await _same(http, running)
    e2 = await _e2(http, running)
    assert e2["user_id"] == uid and e2["user"] == "alice"

    status, body = await call(http, running, "cmd=soft_meter&dev_id=E2&val=5000",
                              headers=ADMIN)
    assert status == 200, body
    await _same(http, running)
    assert (await _e2(http, running))["total_energy"] == 5000

    # `time` and every com_err_secs move on without a cycle; E3's count starts half a
    # second after `time`'s, so they tick at different moments.
    clock.advance(1.5 - clock.now() % 1.0)
    await add_evse(http, running, "E3", headers=ADMIN)
    await running.app.manager.wait_cycle()
    ticks = set()
    for _ in range(5):
        clock.advance(0.3)
        await _same(http, running)
        _, info = await call(http, running, "cmd=get_dev_info")
        ticks.add(next(d["com_err_secs"] for d in info["devices"] if d["dev_id"] == "E3"))
    assert ticks == {0, 1}
