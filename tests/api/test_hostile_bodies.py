"""Hostile request bodies, on a raw socket: JSON nested 100,000 deep, NaN and numbers no
float holds, lone surrogates, bytes that are not UTF-8, forms in charsets no one should
use, bodies over 2 MiB (also chunked, also with a Content-Length that lies). Each one is
a JSON 4xx, changes nothing and leaves no traceback in the log."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import pytest

from chargebrain.api.bodies import MAX_JSON_DEPTH, form_fields, json_body
from chargebrain.api.errors import ApiError
from tests.api.test_request_forms import Raw, assert_json_error, assert_no_traceback, raw_request
from tests.conftest import Running, wait_for

JSON = b"Content-Type: application/json\r\n"
FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"
LIMIT = 2 * 1024 * 1024
#: Every command that reads a JSON body (the HTTP-input ones at their devices).
JSON_COMMANDS = [b"set_params", b"set_device", b"set_user", b"set_cm_vars",
                 b"set_ajax_meter&dev_id=M5", b"set_ajax_evse&dev_id=E2"]


async def post(running: Running, cmd: bytes, body: bytes, headers: bytes = JSON) -> Raw:
    return await raw_request(running, b"/cnf?cmd=" + cmd, b"POST", headers, body)


async def snapshot(running: Running) -> list[Any]:
    out = []
    for cmd in (b"get_params", b"get_devices", b"get_users", b"get_cm_vars"):
        answer = await raw_request(running, b"/cnf?cmd=" + cmd)
        assert answer.status == 200, answer
        out.append(answer.json())
    params = out[0]
    out[0] = {k: v for k, v in params.items() if k in ("title", "desc", "min_pause_time")}
    out[3] = [(v["name"], v["expr"]) for v in out[3]["vars"]]
    return out


# --- JSON --------------------------------------------------------------------------------


async def add_push_devices(running: Running) -> None:
    for dev in (b'{"dev_type": "evse_ajax", "dev_id": "E2"}',
                b'{"dev_type": "meter_ajax", "dev_id": "M5"}'):
        answer = await post(running, b"set_device", dev)
        assert answer.status == 200, answer


@pytest.mark.parametrize("cmd", JSON_COMMANDS)
async def test_json_nested_100000_deep_is_a_400(
    running: Running, caplog: pytest.LogCaptureFixture, cmd: bytes
) -> None:
    await add_push_devices(running)
    caplog.set_level(logging.DEBUG)
    for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
        body = opening * 100_000 + b"1" + closing * 100_000
        message = assert_json_error(await post(running, cmd, body), 400)
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in message
    assert_no_traceback(caplog)


def test_json_depth_limit_is_exact() -> None:
    assert json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ApiError, match="nested deeper"):
        json_body(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    # Many brackets side by side are not deep.
    assert len(json_body(b"[" + b"[[]]," * 10_000 + b"[]]")) == 10_001


async def test_a_deep_rule_object_is_refused_and_changes_nothing(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # Rules accept keys of their own; a value nested 500 deep is still no JSON we take.
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    deep = b"[" * 500 + b"]" * 500
    body = b'{"name": "deep", "charging_rules": [{"mine": ' + deep + b"}]}"
    assert_json_error(await post(running, b"set_user", body), 400)
    assert await snapshot(running) == before
    assert_no_traceback(caplog)


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999",
                                   b"1" + b"0" * 400 + b".5", b"-" + b"9" * 5000])
async def test_numbers_json_cannot_carry_are_a_400(
    running: Running, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    # Rule objects take keys of their own: such a value was stored and answered as NaN.
    body = b'{"name": "n", "charging_rules": [{"mine": ' + value + b"}]}"
    assert_json_error(await post(running, b"set_user", body), 400)
    assert_json_error(await post(running, b"set_params", b'{"min_pause_time": ' + value + b"}"),
                      400)
    assert await snapshot(running) == before
    assert_no_traceback(caplog)


async def test_an_integer_beyond_any_float_is_a_400_where_a_number_is_needed(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"min_pause_time": ' + b"9" * 400 + b"}"
    assert "too large" in assert_json_error(await post(running, b"set_params", body), 400)
    assert_no_traceback(caplog)


async def test_a_hex_number_beyond_any_float_is_a_400(running: Running) -> None:
    answer = await raw_request(running, b"/cnf?cmd=soft_meter&dev_id=E1&val=0x" + b"f" * 400)
    assert "too large" in assert_json_error(answer, 400)


@pytest.mark.parametrize("text", [b'"\\ud800"', b'"x\\uDC80"', b'"\\ud83d"', b'"\xed\xa0\x80"',
                                  b'"\xc0\xaf"', b'"\xff"'])
async def test_text_that_is_no_unicode_is_a_400_and_is_never_stored(
    running: Running, caplog: pytest.LogCaptureFixture, text: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    for cmd, body in ((b"set_params", b'{"title": %s}'), (b"set_user", b'{"name": %s}'),
                      (b"set_user", b'{%s: 1}'),
                      (b"set_cm_vars", b'{"vars": [{"name": "a", "expr": %s}]}')):
        assert_json_error(await post(running, cmd, body % text), 400)
    assert await snapshot(running) == before
    # The answers still work.
    assert (await raw_request(running, b"/cnf?cmd=get_params")).status == 200
    assert_no_traceback(caplog)


async def test_a_surrogate_pair_is_one_character(running: Running) -> None:
    answer = await post(running, b"set_params", b'{"title": "car \\ud83d\\ude97"}')
    assert answer.status == 200, answer
    params = (await raw_request(running, b"/cnf?cmd=get_params")).json()
    assert params["title"] == "car \U0001f697"


async def test_a_lone_surrogate_stored_before_is_answered_escaped(running: Running) -> None:
    # What an older version stored from a body it did not check.
    mgr = running.app.manager
    mgr.settings.set(mgr.site.with_changes(title="a\ud800b"), persist=False)
    answer = await raw_request(running, b"/cnf?cmd=get_params")
    assert answer.status == 200
    assert b'"title":"a\\ud800b"' in answer.body
    assert answer.json()["title"] == "a\ud800b"


def test_duplicate_keys_in_a_json_object_the_last_counts() -> None:
    assert json_body(b'{"a": 1, "a": 2}') == {"a": 2}


# --- forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers,body", [
    (FORM, b"name=\xff\xfe&val=1"),
    (FORM, b"name=\xed\xa0\x80&val=1"),
    (b"Content-Type: application/x-www-form-urlencoded; charset=nope\r\n", b"name=a&val=1"),
    (b"Content-Type: application/x-www-form-urlencoded; charset=raw_unicode_escape\r\n",
     b"name=\\ud800&val=1"),
    (b"Content-Type: application/x-www-form-urlencoded; charset=utf-16\r\n",
     "name=a&val=1".encode("utf-16")),
])
async def test_a_form_body_that_is_no_text_is_a_400(
    running: Running, caplog: pytest.LogCaptureFixture, headers: bytes, body: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    assert_json_error(await post(running, b"set_cm_vars", body, headers), 400)
    assert await snapshot(running) == before
    assert_no_traceback(caplog)


async def test_forms_in_utf8_ascii_and_latin1_still_count(running: Running) -> None:
    for charset in (b"", b"; charset=utf-8", b"; charset=US-ASCII", b"; charset=ISO-8859-1"):
        headers = b"Content-Type: application/x-www-form-urlencoded" + charset + b"\r\n"
        answer = await post(running, b"set_cm_vars", b"name=fv&val=7", headers)
        assert answer.status == 200, answer
    vars_ = (await raw_request(running, b"/cnf?cmd=get_cm_vars")).json()["vars"]
    assert [(v["name"], v["expr"]) for v in vars_] == [("fv", 7)]


def test_form_fields_keep_order_and_repeats() -> None:
    assert form_fields(b"a=1&b=%C3%A4&a=2&c", None) == [("a", "1"), ("b", "ä"), ("a", "2"),
                                                         ("c", "")]
    assert form_fields(b"b=%E4", "latin-1") == [("b", "ä")]
    # Percent escapes that are no UTF-8 become U+FFFD, as in a query string.
    assert form_fields(b"b=%ED%A0%80", None) == [("b", "\ufffd\ufffd\ufffd")]


# --- size --------------------------------------------------------------------------------


async def exchange(running: Running, head: bytes, chunks: list[bytes]) -> Raw:
    """Send a request in parts while reading the answer (the server may answer and close
    before the client is done sending)."""
    port = urlsplit(running.base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        try:
            writer.write(head)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the answer came first

    sender = asyncio.create_task(send())
    data = await asyncio.wait_for(reader.read(), 20)
    await sender
    writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return Raw(int(lines[0].split()[1]), pairs, rest)


def request_head(extra: bytes) -> bytes:
    return (b"POST /cnf?cmd=set_params HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + JSON
            + extra + b"\r\n")


async def test_a_chunked_body_over_2_mib_is_a_json_413(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
    chunks = [b"%x\r\n{\r\n" % 1] + [chunk] * (LIMIT // (64 * 1024) + 2)
    answer = await exchange(running, request_head(b"Transfer-Encoding: chunked\r\n"), chunks)
    assert_json_error(answer, 413)
    assert_no_traceback(caplog)


async def test_a_content_length_over_2_mib_is_a_json_413(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The length is the truth here; the body only starts arriving.
    head = request_head(b"Content-Length: %d\r\n" % (LIMIT + 1))
    answer = await exchange(running, head, [b"{" + b" " * (LIMIT + 10)])
    assert_json_error(answer, 413)
    assert_no_traceback(caplog)


async def test_a_content_length_longer_than_the_body_changes_nothing(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    # The client says 1000 bytes, sends 20 and goes away: there is nobody to answer.
    port = urlsplit(running.base_url).port
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head(b"Content-Length: 1000\r\n") + b'{"title": "partial"}')
    await writer.drain()
    writer.close()
    await wait_for(lambda: "could not be read" in caplog.text)
    assert await snapshot(running) == before
    assert_no_traceback(caplog)


async def test_a_content_length_shorter_than_the_body(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The first 13 bytes are the body (`{"title": "a`: not JSON); the rest is read as the
    # next request on the connection, and is no HTTP. (aiohttp parses all that arrived at
    # once and may refuse the connection before it answers the first request.)
    port = urlsplit(running.base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /cnf?cmd=set_params HTTP/1.1\r\nHost: x\r\n" + JSON
                 + b"Content-Length: 13\r\n\r\n" + b'{"title": "abcdef"}' + b"x" * 100)
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    answers = data.split(b"HTTP/1.")[1:]
    assert answers, data
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"400", answer
        assert b"\r\nContent-Type: application/json\r\n" in head + b"\r\n"
        assert set(json.loads(body)) == {"error"}
    assert_no_traceback(caplog)


# --- meter definitions -------------------------------------------------------------------


@pytest.mark.parametrize("definition", [
    b'{"rtype": 1, "dev_type": "x", "power_w": {"fixed": ' + b"9" * 5000 + b"}}",
    b'{"rtype": 0x' + b"f" * 5000 + b', "dev_type": "x"}',
    b'{"rtype": 1, "dev_type": "x", "a": {"expr": "' + b"(" * 3000 + b"1" + b")" * 3000
    + b'"}}',
    b'{"rtype": 1, "dev_type": "x", "a": {"address": "/x", "regex": "' + b"(" * 3000
    + b")" * 3000 + b'"}}',
    b'{"rtype": 1, "dev_type": "x", "name": "\\ud800"}',
    b"[" * 100_000 + b"]" * 100_000,
])
async def test_a_hostile_meter_definition_is_a_400(
    running: Running, caplog: pytest.LogCaptureFixture, definition: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    before = (await raw_request(running, b"/cnf?cmd=get_meter_defs")).json()
    message = assert_json_error(await post(running, b"set_meter_def", definition), 400)
    assert message.startswith("invalid meter definition")
    assert (await raw_request(running, b"/cnf?cmd=get_meter_defs")).json() == before
    assert (await raw_request(running, b"/cnf?cmd=get_dev_types")).status == 200
    assert_no_traceback(caplog)


@pytest.mark.parametrize("name", ["max_total_power", "power_reserve", "max_total_evse_power",
                                  "max_imbalance"])
@pytest.mark.parametrize("watts", [b"1.7e308", b"-1.7976931348623157e308"])
async def test_a_watt_name_beyond_any_current_is_a_400(
    running: Running, caplog: pytest.LogCaptureFixture, name: str, watts: bytes
) -> None:
    # Converted to mA (÷ 3 ÷ 230 × 1000) the number overflowed to infinity.
    caplog.set_level(logging.DEBUG)
    before = await snapshot(running)
    body = b'{"%s": %s}' % (name.encode(), watts)
    assert name in assert_json_error(await post(running, b"set_params", body), 400)
    assert await snapshot(running) == before
    assert_no_traceback(caplog)


async def test_a_gzip_body_over_2_mib_unpacked_is_a_json_413(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    packed = gzip.compress(b'{"title": "' + b"a" * (3 * LIMIT) + b'"}')
    assert len(packed) < 64 * 1024
    answer = await post(running, b"set_params", packed,
                        JSON + b"Content-Encoding: gzip\r\n")
    assert_json_error(answer, 413)
    assert_no_traceback(caplog)
