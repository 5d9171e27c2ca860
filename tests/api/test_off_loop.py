"""The heavy part of requests runs in the worker thread, never on the event loop.

Every formula a request carries is compiled in the worker (seen through the compiler's
observers, which name the compiling thread), a meter definition is parsed there and a
large JSON body decoded there; the request is then checked and applied on the event loop
in one step, so a refused request changes nothing and concurrent requests do not
interleave. The bounds on the formula text of one request and of all CM variables.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from chargebrain.api.offload import Worker
from chargebrain.core.formula import MAX_TOTAL_LENGTH
from chargebrain.core.formula.cache import compile_observers
from tests.conftest import Running

_serial = itertools.count(1)


def fresh(length: int = 200) -> str:
    """A formula of about `length` characters that nothing compiled before."""
    head = f"{next(_serial)}.{threading.get_ident() % 1000} + "
    body = " + ".join(["M1.current * 2"] * ((length - len(head)) // 17))
    return head + body


@pytest.fixture
def compiles() -> Iterator[list[tuple[str, str]]]:
    """(thread name, text) of every formula really compiled while the test runs."""
    seen: list[tuple[str, str]] = []

    def observe(text: str) -> None:
        seen.append((threading.current_thread().name, text))

    compile_observers.append(observe)
    try:
        yield seen
    finally:
        compile_observers.remove(observe)


def on_loop(seen: list[tuple[str, str]]) -> list[str]:
    return [text[:40] for name, text in seen if not name.startswith(Worker.THREAD_NAME)]


async def post(http: aiohttp.ClientSession, running: Running, query: str,
               body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(running.url(query), data=data,
                         headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def test_formulas_of_every_request_compile_in_the_worker(
        running: Running, http: aiohttp.ClientSession,
        compiles: list[tuple[str, str]]) -> None:
    mgr = running.app.manager
    jobs = running.app.worker.jobs
    sent: list[str] = []

    def new(length: int = 200) -> str:
        sent.append(fresh(length))
        return sent[-1]

    assert await post(http, running, "cmd=set_cm_vars",
                      {"vars": [{"name": "a", "expr": new()}, {"name": "b", "expr": new()}]}
                      ) == (200, "ok")
    query = urllib.parse.urlencode({"cmd": "set_cm_vars", "name": "c", "val": new(100)})
    async with http.get(running.url(query)) as resp:
        assert resp.status == 200
    assert await post(http, running, "cmd=set_params",
                      {"max_total_current": new(), "surplus_expr": new()}) == (200, "ok")
    evse = {"dev_type": "evse_ajax", "dev_id": "E2", "max_charging_cur": f" {new()} ",
            "charging_rules": [{"mode": 0, "current": 8000, "expr": new()}],
            "crule_set": {"selected_id": "x", "rule_set": {"x": [
                {"id": 1, "ctype": 0, "atype": 0, "cexpr": new(), "aexpr": new()}]}}}
    status, _ = await post(http, running, "cmd=set_device", {"devices": [evse]})
    assert status == 200
    status, _ = await post(http, running, "cmd=set_params", {"devices": [
        {"dev_type": "meter_expression", "dev_id": "M7", "expr": new()}]})
    assert status == 200
    status, _ = await post(http, running, "cmd=set_user", {
        "name": "u", "charging_rules": [{"mode": 0, "current": 6000, "expr": new()}]})
    assert status == 200
    # A bad formula is found in the worker too, and refused.
    status, answer = await post(http, running, "cmd=set_cm_vars",
                                {"vars": [{"name": "d", "expr": new() + " +"}]})
    assert status == 400 and "unexpected end" in answer["error"]
    # The cycles that follow use what the requests compiled.
    await mgr.wait_cycle()
    await mgr.wait_cycle()
    compiled = {text for _, text in compiles}
    assert all(text in compiled for text in sent[:-1]) and sent[-1] + " +" in compiled
    assert on_loop(compiles) == []
    assert running.app.worker.jobs == jobs + 7  # one job per request


async def test_a_meter_definition_is_read_in_the_worker(running: Running,
                                                        http: aiohttp.ClientSession) -> None:
    definition = (b'{"rtype": 1, "mtype": 1, "name": "Worker test", "dev_type": "worker_test",'
                  b' "power_w": {"address": "/d", "query": "p"}}')
    jobs = running.app.worker.jobs
    status, answer = await post(http, running, "cmd=set_meter_def", definition)
    assert status == 200 and answer["dev_type"] == "meter_worker_test"
    assert running.app.worker.jobs == jobs + 1
    status, answer = await post(http, running, "cmd=set_meter_def", b"{ nonsense")
    assert status == 400 and "invalid meter definition" in answer["error"]
    assert running.app.worker.jobs == jobs + 2


async def test_a_large_json_body_is_decoded_in_the_worker(running: Running,
                                                          http: aiohttp.ClientSession) -> None:
    jobs = running.app.worker.jobs
    body = {"vars": [{"name": "big", "expr": 7}], "padding": "x" * 300_000}
    assert await post(http, running, "cmd=set_cm_vars", body) == (200, "ok")
    assert running.app.worker.jobs == jobs + 2  # the body, then its formulas
    assert running.app.cm_vars.get("big") is not None
    # Broken or too deeply nested, large or small: 400, the same message either way.
    for raw in (b"[" * 300_000, b"[" * 1000):
        status, answer = await post(http, running, "cmd=set_cm_vars", raw)
        assert status == 400 and answer["error"].endswith("nested deeper than 64 levels")
    broken = json.dumps(body).encode()[:-1]
    status, answer = await post(http, running, "cmd=set_cm_vars", broken)
    assert status == 400 and "not valid JSON" in answer["error"]


async def test_formula_text_of_one_request_is_bounded(running: Running,
                                                      http: aiohttp.ClientSession) -> None:
    cm = running.app.cm_vars
    too_much = [{"name": f"v{i}", "expr": fresh(4000)} for i in range(17)]
    status, answer = await post(http, running, "cmd=set_cm_vars", {"vars": too_much})
    assert status == 400 and f"at most {MAX_TOTAL_LENGTH}" in answer["error"]
    assert len(cm) == 0
    rules = [{"mode": 0, "current": 6000, "expr": fresh(4000)} for _ in range(8)]
    rule_set = {"x": [{"id": i, "ctype": 0, "atype": 0, "cexpr": fresh(4000)}
                      for i in range(8)]}
    evse = {"dev_type": "evse_ajax", "dev_id": "E2", "charging_rules": rules,
            "crule_set": {"rule_set": rule_set}}
    status, _ = await post(http, running, "cmd=set_device", evse)
    assert status == 200  # 64 000 characters: within the bound
    evse["max_charging_cur"] = fresh(3000)
    status, answer = await post(http, running, "cmd=set_device", evse)
    assert status == 400 and "formulas too long in total" in answer["error"]
    assert isinstance(running.app.manager.devices["E2"].settings.max_charging_cur, int)


async def test_formula_text_of_all_cm_variables_is_bounded(running: Running,
                                                           http: aiohttp.ClientSession) -> None:
    cm = running.app.cm_vars
    for part in range(4):
        status, _ = await post(http, running, "cmd=set_cm_vars", {"vars": [
            {"name": f"p{part}_{i}", "expr": fresh(4000)} for i in range(4)]})
        assert status == 200
    stored = running.app.store.query("SELECT count(*) FROM cm_vars")[0][0]
    more = fresh(MAX_TOTAL_LENGTH - sum(len(v.text) for v in cm.all()) + 100)
    status, answer = await post(http, running, "cmd=set_cm_vars",
                                {"vars": [{"name": "one_more", "expr": more}]})
    assert status == 400 and "formulas of all variables" in answer["error"]
    assert cm.get("one_more") is None
    assert running.app.store.query("SELECT count(*) FROM cm_vars")[0][0] == stored
    # A number does not count, and a change that makes the formulas shorter is taken.
    assert await post(http, running, "cmd=set_cm_vars",
                      {"vars": [{"name": "n", "expr": 5}]}) == (200, "ok")
    assert await post(http, running, "cmd=set_cm_vars",
                      {"vars": [{"name": "p0_0", "expr": "1 + 1"}]}) == (200, "ok")
    assert await post(http, running, "cmd=set_cm_vars",
                      {"vars": [{"name": "one_more", "expr": more}]}) == (200, "ok")


async def test_concurrent_requests_do_not_interleave(running: Running,
                                                     http: aiohttp.ClientSession) -> None:
    def request(prefix: str) -> dict[str, Any]:
        return {"vars": [{"name": f"{prefix}{i}", "expr": fresh(3000)} for i in range(20)]}

    results = await asyncio.gather(*(
        post(http, running, "cmd=set_cm_vars&clear=1", request(prefix)) for prefix in "abc"))
    assert results == [(200, "ok")] * 3
    names = {v.name[0] for v in running.app.cm_vars.all()}
    assert len(names) == 1 and len(running.app.cm_vars) == 20
    rows = running.app.store.query("SELECT name FROM cm_vars")
    assert {str(r[0])[0] for r in rows} == names and len(rows) == 20
    # A request refused for one bad formula among many changes nothing.
    bad = request("z")
    bad["vars"][-1]["expr"] += " *"
    assert (await post(http, running, "cmd=set_cm_vars", bad))[0] == 400
    assert {v.name[0] for v in running.app.cm_vars.all()} == names
