"""Request forms real clients send, on a raw socket: repeated slashes, a percent-encoded
query, and every refusal (unknown path, wrong method, 401, a body or request line or
header over the limits) as one JSON error form, without tracebacks in the log."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from chargebrain.api.request_forms import plain_target
from tests.api.test_users import ADMIN, basic, call, set_password
from tests.conftest import Running, wait_for


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(running: Running, target: bytes, method: bytes = b"GET",
                      headers: bytes = b"", body: bytes = b"") -> Raw:
    """One request exactly as given (no client normalises the target), then the answer."""
    port = urlsplit(running.base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if body:
            head += b"Content-Length: %d\r\n" % len(body)
        writer.write(head + headers + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return Raw(status, pairs, rest)


def assert_json_error(answer: Raw, status: int) -> str:
    """The one error form: the status, exactly one `application/json`, compact JSON."""
    assert answer.status == status, answer
    assert answer.header("Content-Type") == ["application/json"], answer.headers
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert answer.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return str(body["error"])


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


# --- repeated slashes ------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"//cnf?cmd=get_dev_info", b"///cnf?cmd=get_dev_info"])
async def test_repeated_slashes_are_the_plain_path(running: Running, target: bytes) -> None:
    plain = await raw_request(running, b"/cnf?cmd=get_dev_info")
    answer = await raw_request(running, target)
    assert answer.status == 200
    assert answer.header("Content-Type") == ["application/json"]
    assert [d["dev_id"] for d in answer.json()["devices"]] == (
        [d["dev_id"] for d in plain.json()["devices"]])


async def test_repeated_slashes_keep_the_permission_of_the_command(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await set_password(http, running)
    wrong = b"Authorization: " + basic("admin", "wrong")["Authorization"].encode() + b"\r\n"
    # A public command with wrong credentials sent unasked is still public …
    assert (await raw_request(running, b"//cnf?cmd=get_dev_info", headers=wrong)).status == 200
    # … and an admin command still needs the password.
    refused = await raw_request(running, b"//cnf?cmd=get_devices")
    assert_json_error(refused, 401)
    assert refused.header("WWW-Authenticate") == ['Basic realm="chargebrain"']
    admin = b"Authorization: " + ADMIN["Authorization"].encode() + b"\r\n"
    assert (await raw_request(running, b"//cnf?cmd=get_devices", headers=admin)).status == 200


async def test_repeated_slashes_with_a_body(running: Running) -> None:
    answer = await raw_request(running, b"//cnf?cmd=set_params", b"POST",
                               b"Content-Type: application/json\r\n",
                               b'{"min_pause_time": 301}')
    assert answer.status == 200 and answer.json() == "ok"
    assert running.app.manager.site.min_pause_time == 301


async def test_repeated_slashes_on_the_credential_check_page(
    running: Running, http: aiohttp.ClientSession
) -> None:
    for target in (b"//ui/en/sim.htm", b"/ui//en//sim.htm"):
        answer = await raw_request(running, target)
        assert answer.status == 200 and b"html" in answer.body
    await set_password(http, running)
    assert_json_error(await raw_request(running, b"//ui/en/sim.htm"), 401)


async def test_an_encoded_slash_is_not_a_separator(running: Running) -> None:
    assert_json_error(await raw_request(running, b"/%2Fcnf?cmd=get_dev_info"), 404)


# --- percent-encoded query separators ---------------------------------------------------


@pytest.mark.parametrize("target", [
    b"/cnf?cmd%3Dmodbus%26device%3Devse%26read%3Dall",
    b"/cnf?cmd%3dmodbus%26device%3devse%26read%3dall",
    b"//cnf?cmd%3Dmodbus%26device%3Devse%26read%3Dall",
])
async def test_an_encoded_query_is_the_plain_query(running: Running, target: bytes) -> None:
    plain = await raw_request(running, b"/cnf?cmd=modbus&device=evse&read=all")
    answer = await raw_request(running, target)
    assert answer.status == 200, answer.body
    assert set(answer.json()) == set(plain.json())
    assert "8094" in answer.json()


async def test_an_encoded_query_writes(running: Running) -> None:
    answer = await raw_request(running, b"/cnf?cmd%3Dmodbus%26device%3Dmeter2"
                                        b"%26write%3D8044%26value%3D7")
    assert answer.status == 200 and answer.json() == "ok"
    assert running.app.powerbrain.banks["meter2"].get("phases") == 7


async def test_encoded_separators_inside_a_plain_query_stay_data(
    running: Running, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, running, "cmd=set_device",
                              {"dev_type": "meter_ajax", "dev_id": "M5", "name": "feed"})
    assert status == 200, body
    answer = await raw_request(
        running, b"/cnf?cmd=set_ajax_meter&dev_id=M5&power_w=5&model=a%3Db%26c%3Dd")
    assert answer.status == 200, answer.body
    await running.app.manager.wait_cycle()
    _, info = await call(http, running, "cmd=get_dev_info")
    [meter] = [d for d in info["devices"] if d["dev_id"] == "M5"]
    assert meter["model"] == "a=b&c=d"
    # In an encoded query, a value's own `=` is encoded twice and decoded twice.
    answer = await raw_request(running, b"/cnf?cmd%3Dset_ajax_meter%26dev_id%3DM5"
                                        b"%26power_w%3D5%26model%3Dx%253Dy")
    assert answer.status == 200, answer.body
    await running.app.manager.wait_cycle()
    _, info = await call(http, running, "cmd=get_dev_info")
    [meter] = [d for d in info["devices"] if d["dev_id"] == "M5"]
    assert meter["model"] == "x=y"


@pytest.mark.parametrize("raw,plain", [
    ("/cnf?cmd=get_dev_info", None),
    ("/cnf?cmd=set_cm_vars&name=a&val=b%3Dc", None),  # a literal = : a plain query
    ("/cnf?cmd=x&flags%3DC", None),
    ("/cnf?cmd%3Dx%26a%3D1", ("/cnf", "cmd=x&a=1", False)),
    ("/cnf?cmd%3dx&a%3d1", ("/cnf", "cmd=x&a=1", False)),
    ("/cnf?cmd%26x", None),  # no encoded = at all
    ("/cnf?a%3Db%2520c%23d", ("/cnf", "a=b%20c%23d", False)),
    ("//cnf?cmd=x", ("/cnf", "cmd=x", True)),
    ("/ui//en///sim.htm", ("/ui/en/sim.htm", "", True)),
    ("/%2F%2Fcnf", None),
])
def test_the_plain_form_of_a_request_target(
    raw: str, plain: tuple[str, str, bool] | None
) -> None:
    assert plain_target(raw) == plain


# --- one error form -------------------------------------------------------------------


async def test_unknown_paths_are_json_404(running: Running) -> None:
    for target in (b"/nothing", b"/cnf/x?cmd=get_dev_info", b"//nothing//here", b"/ui/",
                   b"/ui/nothing.js"):
        message = assert_json_error(await raw_request(running, target), 404)
        assert message.startswith("no such page: /")
    message = assert_json_error(await raw_request(running, b"/nothing"), 404)
    assert message == "no such page: /nothing"


async def test_wrong_methods_are_json_405(running: Running) -> None:
    assert_json_error(await raw_request(running, b"/cnf?cmd=get_dev_info", b"PUT"), 405)
    answer = await raw_request(running, b"/ui/en/sim.htm", b"POST", body=b"x")
    assert_json_error(answer, 405)
    assert answer.header("Allow")
    assert_json_error(await raw_request(running, b"//ui/en/sim.htm", b"DELETE"), 405)


async def test_every_401_has_the_same_form(running: Running, http: aiohttp.ClientSession) -> None:
    await set_password(http, running)
    # Refused by the dispatcher (admin commands), by a command itself (get_user without a
    # valid id), and by the credential check page: the same bytes layout and header.
    for target in (b"/cnf?cmd=get_users", b"/cnf?cmd=get_user&id=123", b"/ui/en/sim.htm"):
        answer = await raw_request(running, target)
        assert_json_error(answer, 401)
        assert answer.header("WWW-Authenticate") == ['Basic realm="chargebrain"']


async def test_a_body_over_the_limit_is_json_413_without_traceback(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    answer = await raw_request(running, b"/cnf?cmd=set_params", b"POST",
                               b"Content-Type: application/json\r\n", body)
    assert_json_error(answer, 413)
    assert_no_traceback(caplog)


@pytest.mark.parametrize("target,headers", [
    (b"/cnf?cmd=get_dev_info&x=" + b"a" * 10_240, b""),
    (b"/cnf?cmd=get_dev_info", b"X-Big: " + b"a" * 10_240 + b"\r\n"),
    (b"/cnf?cmd=get_dev_info", b"".join(b"X-%d: a\r\n" % i for i in range(300))),
])
async def test_requests_over_the_parser_limits_are_json_without_traceback(
    running: Running, caplog: pytest.LogCaptureFixture, target: bytes, headers: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await raw_request(running, target, headers=headers)
    message = assert_json_error(answer, 400)
    assert b"aaaa" not in answer.body  # nothing of the request is echoed
    assert "too long" in message or "valid" in message
    assert_no_traceback(caplog)
    # The server goes on answering.
    assert (await raw_request(running, b"/cnf?cmd=get_dev_info")).status == 200


async def test_garbage_is_a_json_400(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = urlsplit(running.base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert data.startswith(b"HTTP/1.")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0]
    assert b"Content-Type: application/json\r\n" in head + b"\r\n"
    assert json.loads(body) == {"error": "not a valid HTTP request"}
    assert_no_traceback(caplog)


async def test_broken_bodies_are_json_400_without_traceback(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    json_type = b"Content-Type: application/json\r\n"
    answer = await raw_request(running, b"/cnf?cmd=get_dev_info", b"POST",
                               json_type + b"Content-Encoding: gzip\r\n", b"not gzip")
    assert assert_json_error(answer, 400) == "the request body could not be read"
    answer = await raw_request(running, b"/cnf?cmd=get_dev_info", b"POST",
                               json_type + b"Transfer-Encoding: chunked\r\n"
                               b"\r\nzz\r\nabc\r\n0\r\n")
    assert_json_error(answer, 400)
    # A client that goes away in the middle of its body.
    port = urlsplit(running.base_url).port
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /cnf?cmd=get_dev_info HTTP/1.1\r\nHost: x\r\n" + json_type
                 + b"Content-Length: 1000\r\n\r\n{\"a\": ")
    await writer.drain()
    writer.close()
    await wait_for(lambda: "could not be read" in caplog.text
                   and caplog.text.count("could not be read") >= 2)
    assert_no_traceback(caplog)
    assert (await raw_request(running, b"/cnf?cmd=get_dev_info")).status == 200
