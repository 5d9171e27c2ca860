"""set_cm_vars and get_cm_vars through HTTP against the running app."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from tests.conftest import Running, wait_for


async def call(http: aiohttp.ClientSession, running: Running, query: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    if body is None:
        async with http.get(running.url(query), headers=headers) as resp:
            return resp.status, await resp.json()
    async with http.post(running.url(query), json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def get_vars(http: aiohttp.ClientSession, running: Running) -> list[dict[str, Any]]:
    status, answer = await call(http, running, "cmd=get_cm_vars")
    assert status == 200, answer
    return answer["vars"]  # type: ignore[no-any-return]


def stored(running: Running) -> dict[str, str]:
    rows = running.app.store.query("SELECT name, expr FROM cm_vars")
    return {str(n): str(e) for n, e in rows}


async def test_set_by_get_and_read_back(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    assert await call(http, running, "cmd=set_cm_vars&name=var1&val=1.5") == (200, "ok")
    assert await call(http, running, "cmd=set_cm_vars&name=Twice&val=CM.var1 * 2") == (200, "ok")
    # Lenient numbers as scripts send them.
    assert (await call(http, running, 'cmd=set_cm_vars&name=q&val="6000.0"'))[0] == 200
    await running.app.manager.wait_cycle()
    assert await get_vars(http, running) == [
        {"name": "var1", "expr": 1.5, "val": 1.5, "tmp": False},
        {"name": "Twice", "expr": "CM.var1 * 2", "val": 3, "tmp": False},
        {"name": "q", "expr": 6000, "val": 6000, "tmp": False},
    ]
    assert stored(running) == {"var1": "1.5", "Twice": "CM.var1 * 2", "q": "6000.0"}
    # Names are case-insensitive: this replaces var1 and keeps its place.
    assert (await call(http, running, "cmd=set_cm_vars&name=VAR1&val=4"))[0] == 200
    await running.app.manager.wait_cycle()
    values = await get_vars(http, running)
    assert values[0] == {"name": "VAR1", "expr": 4, "val": 4, "tmp": False}
    assert values[1]["val"] == 8
    assert stored(running) == {"VAR1": "4", "Twice": "CM.var1 * 2", "q": "6000.0"}


async def test_get_cm_vars_shape(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await running.app.manager.wait_cycle()
    status, answer = await call(http, running, "cmd=get_cm_vars")
    assert status == 200
    assert set(answer) == {"vars", "predefined"}
    assert answer["vars"] == []
    pre = answer["predefined"]
    for name in ("_num_charging", "_num_charging1", "_max_total_current",
                 "_max_total_evse_current", "_surplus", "_org_surplus", "_dt",
                 "_max_total_current_prc"):
        assert isinstance(pre[name], int | float), name
    assert "_price" not in pre  # no price source configured
    assert pre["_max_total_current"] == 32000 and pre["_num_charging1"] == 1


async def test_set_by_post_with_clear_and_tmp(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await call(http, running, "cmd=set_cm_vars&name=old&val=1")
    body = {"vars": [{"name": "a", "expr": 2}, {"name": "b", "expr": "CM.a + CM.old"},
                     {"name": "_set_price", "expr": "31.5"}]}
    assert await call(http, running, "cmd=set_cm_vars&clear=1", body) == (200, "ok")
    await running.app.manager.wait_cycle()
    values = await get_vars(http, running)
    assert [v["name"] for v in values] == ["a", "b", "_set_price"]
    assert values[1]["val"] == 2  # CM.old no longer exists: 0
    assert stored(running) == {"a": "2", "b": "CM.a + CM.old", "_set_price": "31.5"}
    # tmp: memory only.
    assert await call(http, running, "cmd=set_cm_vars&tmp=1",
                      {"vars": [{"name": "a", "expr": 5}, {"name": "t", "expr": 1}]}) == (200, "ok")
    await running.app.manager.wait_cycle()
    values = {v["name"]: v for v in await get_vars(http, running)}
    assert values["a"] == {"name": "a", "expr": 5, "val": 5, "tmp": True}
    assert values["b"]["val"] == 5 and values["t"]["tmp"] is True
    assert stored(running) == {"a": "2", "b": "CM.a + CM.old", "_set_price": "31.5"}
    # A variable that is gone is also gone from formulas (exists() says so).
    assert await call(http, running, "cmd=set_cm_vars&name=probe&val=exists(CM.t) * 10 %2B CM.t"
                      "&tmp=1") == (200, "ok")
    await running.app.manager.wait_cycle()
    values = {v["name"]: v for v in await get_vars(http, running)}
    assert values["probe"]["val"] == 11
    await call(http, running, "cmd=set_cm_vars&clear=1&tmp=1",
               {"vars": [{"name": "probe", "expr": "exists(CM.t) * 10 + CM.t"}]})
    await running.app.manager.wait_cycle()
    await running.app.manager.wait_cycle()
    assert (await get_vars(http, running))[0]["val"] == 0
    # clear alone deletes everything, stored ones too.
    assert await call(http, running, "cmd=set_cm_vars&clear=1") == (200, "ok")
    assert await get_vars(http, running) == []
    assert stored(running) == {}


async def test_form_post(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    async with http.post(running.url("cmd=set_cm_vars"),
                         data={"name": "f", "val": "7"}) as resp:
        assert resp.status == 200 and await resp.json() == "ok"
    assert (await get_vars(http, running))[0]["expr"] == 7


async def test_bad_input_changes_nothing(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    await call(http, running, "cmd=set_cm_vars&name=keep&val=3")
    await running.app.manager.wait_cycle()
    _, before = await call(http, running, "cmd=get_cm_vars")
    before_stored = stored(running)
    queries = [
        "cmd=set_cm_vars",
        "cmd=set_cm_vars&name=x",
        "cmd=set_cm_vars&name=a-b&val=1",
        "cmd=set_cm_vars&name=1abc&val=1",
        "cmd=set_cm_vars&name=&val=1",
        "cmd=set_cm_vars&name=" + "v" * 65 + "&val=1",
        "cmd=set_cm_vars&name=_price&val=1",
        "cmd=set_cm_vars&name=_surplus&val=1",
        "cmd=set_cm_vars&name=_nonsense&val=1",
        "cmd=set_cm_vars&name=keep&val=1 %2B",
        "cmd=set_cm_vars&name=keep&val=",
        "cmd=set_cm_vars&name=keep&val=nan",
        "cmd=set_cm_vars&name=keep&val=1e999",
        "cmd=set_cm_vars&name=keep&val=foo.bar",
        "cmd=set_cm_vars&name=keep&val=2&clear=maybe",
        "cmd=set_cm_vars&name=keep&val=2&tmp=maybe",
    ]
    for query in queries:
        status, answer = await call(http, running, query)
        assert 400 <= status < 500, (query, answer)
        assert answer["error"], query
    bodies: list[Any] = [
        [1, 2],
        "vars",
        {},
        {"vars": "a=1"},
        {"vars": [1]},
        {"vars": [{"expr": 1}]},
        {"vars": [{"name": "keep", "expr": True}]},
        {"vars": [{"name": "keep", "expr": None}]},
        {"vars": [{"name": "keep", "expr": [1]}]},
        {"vars": [{"name": "keep", "expr": "min(1,"}]},
        {"vars": [{"name": 5, "expr": 1}]},
        # One bad variable refuses the whole request.
        {"vars": [{"name": "fine", "expr": 1}, {"name": "bad name", "expr": 1}]},
        {"vars": [{"name": f"v{i}", "expr": i} for i in range(300)]},
    ]
    for body in bodies:
        status, answer = await call(http, running, "cmd=set_cm_vars", body)
        assert 400 <= status < 500, (body, answer)
        assert answer["error"], body
    status, answer = await call(http, running, "cmd=set_cm_vars&clear=1",
                                {"vars": [{"name": "x-y", "expr": 1}]})
    assert status == 400
    async with http.post(running.url("cmd=set_cm_vars"), data=b"{nope",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]
    await running.app.manager.wait_cycle()
    _, after = await call(http, running, "cmd=get_cm_vars")
    assert after["vars"] == before["vars"]
    assert stored(running) == before_stored


async def test_too_many_variables_in_total(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    first = {"vars": [{"name": f"a{i}", "expr": i} for i in range(200)]}
    assert (await call(http, running, "cmd=set_cm_vars", first))[0] == 200
    more = {"vars": [{"name": f"b{i}", "expr": i} for i in range(100)]}
    status, answer = await call(http, running, "cmd=set_cm_vars", more)
    assert status == 400 and "256" in answer["error"]
    assert len(await get_vars(http, running)) == 200
    assert len(stored(running)) == 200


async def test_admin_only(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    status, _ = await call(http, running, "cmd=change_admin_pwd&old_pwd=&new_pwd=s3cret")
    assert status == 200
    for query in ("cmd=get_cm_vars", "cmd=set_cm_vars&name=a&val=1"):
        status, _ = await call(http, running, query)
        assert status == 401
    token = base64.b64encode(b"admin:s3cret").decode()
    auth = {"Authorization": f"Basic {token}"}
    assert await call(http, running, "cmd=set_cm_vars&name=a&val=1",
                      headers=auth) == (200, "ok")
    status, answer = await call(http, running, "cmd=get_cm_vars", headers=auth)
    assert status == 200 and answer["vars"][0]["name"] == "a"


async def test_dependency_order_and_self_reference(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    body = {"vars": [{"name": "c", "expr": "CM.b + 1"}, {"name": "b", "expr": "CM.a + 1"},
                     {"name": "a", "expr": 1}, {"name": "count", "expr": "CM.count + 1"}]}
    assert (await call(http, running, "cmd=set_cm_vars", body))[0] == 200
    await running.app.manager.wait_cycle()
    values = {v["name"]: v["val"] for v in await get_vars(http, running)}
    assert (values["a"], values["b"], values["c"]) == (1, 2, 3)
    first = values["count"]

    async def counted() -> bool:
        now = {v["name"]: v["val"] for v in await get_vars(http, running)}
        return bool(now["count"] >= first + 2)

    await wait_for(counted, timeout=5)


async def test_names_with_underscores(running: Running, http) -> None:  # type: ignore[no-untyped-def]
    """User names may contain `_` like the vendor's predefined ones; a leading `_` stays
    reserved for those."""
    assert await call(http, running, "cmd=set_cm_vars&name=my_var&val=5") == (200, "ok")
    assert await call(http, running, "cmd=set_cm_vars",
                      {"vars": [{"name": "pv_2", "expr": "CM.my_var * 2"},
                                {"name": "A_b_", "expr": "cm.PV_2 + 1"}]}) == (200, "ok")
    status, answer = await call(http, running, "cmd=set_params",
                                {"max_total_current": "CM.my_var * 1000 + 20000"})
    assert status == 200, answer
    await running.app.manager.wait_cycle()
    await running.app.manager.wait_cycle()
    values = {v["name"]: v["val"] for v in await get_vars(http, running)}
    assert values == {"my_var": 5, "pv_2": 10, "A_b_": 11}
    assert running.app.manager.decider.evaluated_max_total_ma == 25000
    assert stored(running) == {"my_var": "5", "pv_2": "CM.my_var * 2", "A_b_": "cm.PV_2 + 1"}
    for name in ("_my_var", "my-var", "1_a", "_"):
        status, answer = await call(http, running, f"cmd=set_cm_vars&name={name}&val=1")
        assert status == 400 and answer["error"], name
