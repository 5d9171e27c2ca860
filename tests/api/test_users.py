"""Users over HTTP: ids, get/set/del, validation, what a user may change without admin."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import aiohttp

from tests.conftest import Running, wait_for

ADMIN_PWD = "correct horse battery"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic("admin", ADMIN_PWD)


async def call(http: aiohttp.ClientSession, running: Running, query: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One /cnf request; the answer parsed as JSON (or the text if it is not JSON)."""
    if body is None:
        ctx = http.get(running.url(query), headers=headers)
    else:
        ctx = http.post(running.url(query), data=json.dumps(body),
                        headers={"Content-Type": "application/json", **(headers or {})})
    async with ctx as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def add_evse(http: aiohttp.ClientSession, running: Running, dev_id: str = "E2",
                   headers: dict[str, str] | None = None, **settings: Any) -> None:
    dev = {"dev_type": "evse_ajax", "dev_id": dev_id, "name": f"Sim-{dev_id}", **settings}
    status, body = await call(http, running, "cmd=set_params", {"devices": [dev]}, headers)
    assert status == 200, body


async def add_user(http: aiohttp.ClientSession, running: Running, name: str,
                   rfids: list[str], dev_ids: list[str] | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> str:
    status, uid = await call(http, running, "cmd=get_new_user_id", headers=headers)
    assert status == 200, uid
    doc = {"id": uid, "name": name, "dev_ids": dev_ids or [],
           "rfids": [{"id": r, "name": f"{name} {r}"} for r in rfids], **extra}
    status, body = await call(http, running, "cmd=set_user", doc, headers)
    assert status == 200, body
    return str(uid)


async def set_password(http: aiohttp.ClientSession, running: Running,
                       password: str = ADMIN_PWD) -> None:
    status, body = await call(http, running, f"cmd=change_admin_pwd&old_pwd=&new_pwd={password}")
    assert status == 200, body


async def device(http: aiohttp.ClientSession, running: Running, dev_id: str) -> dict[str, Any]:
    _, info = await call(http, running, "cmd=get_dev_info")
    for d in info["devices"]:
        if d["dev_id"] == dev_id:
            return d  # type: ignore[no-any-return]
    raise AssertionError(f"{dev_id} not in get_dev_info")


async def test_new_user_ids_are_random_ten_digit_strings(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    ids = set()
    for _ in range(20):
        status, uid = await call(http, running, "cmd=get_new_user_id")
        assert status == 200
        assert isinstance(uid, str) and re.fullmatch(r"[1-9]\d{9}", uid)
        ids.add(uid)
    assert len(ids) == 20


async def test_create_read_change_delete(running: Running, http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    uid = await add_user(http, running, "wusel", ["4711"], ["e2"], display=False,
                         charging_rules=[{"mode": 0, "current": 8000, "enabled": True}])
    status, user = await call(http, running, f"cmd=get_user&id={uid}")
    assert status == 200
    assert user == {"id": uid, "name": "wusel", "display": False, "dev_ids": ["E2"],
                    "rfids": [{"id": "4711", "name": "wusel 4711", "ac_auth": True,
                               "ac_ovch": False, "used_phases": 0}],
                    "charging_rules": [{"mode": 0, "current": 8000, "enabled": True}]}
    # user_id= works as well as id=; a partial object changes only what it names.
    status, changed = await call(http, running, "cmd=set_user", {"id": uid, "name": "Wusel"})
    assert status == 200 and changed["name"] == "Wusel" and changed["dev_ids"] == ["E2"]
    status, again = await call(http, running, f"cmd=get_user&user_id={uid}")
    assert again == changed
    status, users = await call(http, running, "cmd=get_users")
    assert status == 200 and [u["id"] for u in users] == [uid]
    # The EVSE named in dev_ids now waits for authorisation.
    assert running.app.manager.inventory.user_evses == frozenset({"E2"})

    async def e2_needs_auth() -> bool:
        return bool((await device(http, running, "E2"))["needs_auth"])

    await wait_for(e2_needs_auth)
    status, body = await call(http, running, f"cmd=del_user&id={uid}")
    assert status == 200 and body == "ok"
    assert (await call(http, running, f"cmd=get_user&id={uid}"))[0] == 404
    assert (await call(http, running, f"cmd=del_user&id={uid}"))[0] == 404
    assert running.app.manager.inventory.user_evses == frozenset()


async def test_admin_set_user_without_id_creates_one(running: Running,
                                                     http: aiohttp.ClientSession) -> None:
    status, user = await call(http, running, "cmd=set_user", {"name": "new"})
    assert status == 200 and re.fullmatch(r"\d{10}", user["id"])
    assert user["display"] is True and user["rfids"] == [] and user["dev_ids"] == []


async def test_bad_input_is_refused_and_changes_nothing(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    uid = await add_user(http, running, "a", ["1111"])
    other = await add_user(http, running, "b", ["2222"])
    _, before = await call(http, running, f"cmd=get_user&id={uid}")
    bad_bodies: list[Any] = [
        {"id": uid, "rfids": [{"id": "2222"}]},  # another user's card
        {"id": uid, "rfids": [{"id": " 2222 "}]},  # the same, with spaces
        {"id": uid, "rfids": [{"id": "9"}, {"id": "9"}]},  # twice
        {"id": uid, "rfids": [{"name": "no id"}]},
        {"id": uid, "rfids": [{"id": "has space"}]},
        {"id": uid, "rfids": [{"id": "5", "used_phases": 9}]},
        {"id": uid, "rfids": "1234"},
        {"id": uid, "dev_ids": ["M1"]},  # a meter
        {"id": uid, "dev_ids": ["E77"]},  # no such EVSE
        {"id": uid, "dev_ids": "E2"},
        {"id": uid, "name": 5},
        {"id": uid, "name": "x" * 500},
        {"id": uid, "display": "maybe"},
        {"id": uid, "charging_rules": [{"mode": 99}]},
        {"id": uid, "charging_rules": {"mode": 0}},
        {"id": "not valid!"},
        [uid],
    ]
    for body in bad_bodies:
        status, answer = await call(http, running, "cmd=set_user", body)
        assert status == 400, (body, answer)
        assert isinstance(answer, dict) and answer["error"], body
    status, answer = await call(http, running, "cmd=set_user", {"id": uid, "rfids": [
        {"id": "2222"}]})
    assert "already belongs to another user" in answer["error"]
    assert other not in answer["error"]
    _, after = await call(http, running, f"cmd=get_user&id={uid}")
    assert after == before
    assert (await call(http, running, "cmd=get_user"))[0] == 400
    assert (await call(http, running, "cmd=get_user&id=%20"))[0] == 400
    assert (await call(http, running, "cmd=del_user"))[0] == 400
    # Not JSON at all.
    async with http.post(running.url("cmd=set_user"), data=b"{nope",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400


async def test_rfids_compare_without_case(running: Running, http: aiohttp.ClientSession) -> None:
    await add_user(http, running, "a", ["04ab12cd"])
    status, body = await call(http, running, "cmd=set_user",
                              {"name": "b", "rfids": [{"id": "04AB12CD"}]})
    assert status == 400, body


async def test_user_changes_own_object_without_admin(running: Running,
                                                     http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    await add_evse(http, running, "E3")
    uid = await add_user(http, running, "anna", ["1234"], ["E2"])
    await set_password(http, running)
    # Own object: read and change name, display, rfids, charging_rules.
    status, me = await call(http, running, f"cmd=get_user&id={uid}")
    assert status == 200 and me["name"] == "anna"
    status, me = await call(http, running, "cmd=set_user", {
        "id": uid, "name": "Anna", "display": False, "dev_ids": ["E2"],
        "rfids": [{"id": "1234"}, {"id": "5678", "ac_auth": False, "ac_ovch": True}],
        "charging_rules": [{"mode": 0, "current": 10000, "enabled": True}]})
    assert status == 200, me
    assert me["name"] == "Anna" and len(me["rfids"]) == 2 and me["dev_ids"] == ["E2"]
    # Granting EVSEs is for the admin only: 403 with a clear message, nothing changed.
    status, body = await call(http, running, "cmd=set_user",
                              {"id": uid, "name": "Mallory", "dev_ids": ["E2", "E3"]})
    assert status == 403 and "dev_ids" in body["error"]
    status, body = await call(http, running, "cmd=set_user",
                              {"id": uid, "dev_ids": []})
    assert status == 403
    _, me_now = await call(http, running, f"cmd=get_user&id={uid}", headers=ADMIN)
    assert me_now == me
    # Without a valid user id: 401 (creating users needs admin).
    status, _ = await call(http, running, "cmd=set_user", {"name": "intruder"})
    assert status == 401
    status, _ = await call(http, running, "cmd=set_user", {"id": "1000000000", "name": "x"})
    assert status == 401
    assert (await call(http, running, "cmd=get_user&id=1000000001"))[0] == 401
    assert (await call(http, running, "cmd=get_users"))[0] == 401
    assert (await call(http, running, "cmd=get_new_user_id"))[0] == 401
    assert (await call(http, running, f"cmd=del_user&id={uid}"))[0] == 401
    # The admin still can do all of it.
    status, body = await call(http, running, "cmd=set_user",
                              {"id": uid, "dev_ids": ["E2", "E3"]}, ADMIN)
    assert status == 200 and body["dev_ids"] == ["E2", "E3"]
    status, _ = await call(http, running, "cmd=set_user", {"name": "bob"}, ADMIN)
    assert status == 200
    assert len(running.app.users) == 2


async def test_users_survive_a_restart(running: Running, http: aiohttp.ClientSession) -> None:
    from chargebrain.manager.users import UserDirectory

    await add_evse(http, running, "E2")
    uid = await add_user(http, running, "keep", ["77"], ["E2"])
    _, before = await call(http, running, f"cmd=get_user&id={uid}")
    fresh = UserDirectory(running.app.store, running.app.manager)
    user = fresh.get(uid)
    assert user is not None and user.name == "keep" and user.dev_ids == ("E2",)
    assert fresh.find_card("77") is not None
    assert before["rfids"][0]["id"] == "77"


async def test_deleted_evse_does_not_lock_the_user_out(running: Running,
                                                       http: aiohttp.ClientSession) -> None:
    await add_evse(http, running, "E2")
    await add_evse(http, running, "E3")
    uid = await add_user(http, running, "lena", ["31"], ["E2", "E3"])
    assert (await call(http, running, "cmd=del_device&dev_id=E3"))[0] == 200
    await set_password(http, running)
    status, body = await call(http, running, "cmd=set_user",
                              {"id": uid, "name": "Lena", "dev_ids": ["E3", "E2"]})
    assert status == 200 and body["name"] == "Lena" and body["dev_ids"] == ["E2", "E3"]
    # A new EVSE id must exist, though.
    status, body = await call(http, running, "cmd=set_user", {"id": uid, "dev_ids": ["E4"]},
                              ADMIN)
    assert status == 400 and "E4" in body["error"]
