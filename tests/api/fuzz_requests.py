"""Hostile HTTP requests to `/cnf`, as a hypothesis strategy.

`requests(commands, auths)` draws one of the given commands of
`chargebrain.api.commands.COMMANDS` (the tests pass each command of the table, so a new
one is fuzzed without a change here), GET or POST, the parameters that command reads
(found in its source, see `read_parameters`) and random ones with values from
fuzz_values.py, one of them sometimes twice, and a body: the JSON object the command
takes with hostile values (keys twice, NaN, 400-digit numbers, lone surrogates), then
maybe broken (truncated, nested
100,000 deep, in UTF-16, with bytes that are no UTF-8), a form, a meter definition, random
bytes or a body around the 2 MiB limit; sent plainly, chunked or gzip-compressed, with
the admin's credentials, wrong ones, broken ones or none. `render` makes the bytes.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from chargebrain import api as api_package
from chargebrain.api.commands import COMMANDS
from chargebrain.api.shapes.pushes import EvsePush, MeterPush
from tests.api.fuzz_values import (
    BODY_OBJECTS,
    RAW_FRAGMENTS,
    Pairs,
    QueryValue,
    RawPart,
    json_any,
    meter_definitions,
    query_any,
    query_value,
    texts,
    weighted,
)

ADMIN_PASSWORD = "fuzz admin pw"
BODY_LIMIT = 2 * 1024 * 1024
#: Commands that answer something else than JSON (only with 200), and its content type.
TEXT_COMMANDS = {"get_transactions": "text/csv; charset=utf-8",
                 "get_diag_log": "text/plain; charset=utf-8"}
API_DIR = Path(api_package.__file__).parent
#: How a command module reads a parameter: params["x"], params.get("x"), "x" in req.params,
#: getall("x"), require(req.params, "x"), fields["x"], fields.get("x"), "x" in fields, and
#: helpers given the request and a name (`_flag(req, "clear")`).
_READS = [re.compile(p) for p in (
    r"""\(req,\s*["'](\w+)["']""",
    r"""params(?:\.get)?(?:\(|\[)\s*["'](\w+)["']""",
    r"""["'](\w+)["']\s+in\s+(?:req\.)?(?:params|fields|multi_params)""",
    r"""getall\(\s*["'](\w+)["']""",
    r"""require\(\s*req\.params,\s*["'](\w+)["']""",
    r"""fields(?:\.get)?(?:\(|\[)\s*["'](\w+)["']""",
)]
#: Query parameters read through a declared shape (api/shapes/): its fields.
QUERY_SHAPES = {"set_ajax_evse": EvsePush, "set_ajax_meter": MeterPush}
#: `for key in ("id", "user_id"): … req.params[key]`
_LOOPS = re.compile(r"""for \w+ in \(((?:\s*["']\w+["'],?)+)\)""")
_COMMAND = re.compile(r"""@command\(\s*["'](\w+)["']""")


@cache
def read_parameters() -> dict[str, frozenset[str]]:
    """The parameter names each command's module reads (`params["x"]`, `params.get("x")`,
    `"x" in req.params`, `fields["x"]`, …), found in the source, and the fields of the
    shapes that read a command's query (`QUERY_SHAPES`): a new parameter is fuzzed
    without a change here. Names are per module; a command gets its module's names."""
    out: dict[str, frozenset[str]] = {}
    for path in sorted(API_DIR.glob("cmd_*.py")):
        source = path.read_text()
        names = {name for pattern in _READS for name in pattern.findall(source)}
        for group in _LOOPS.findall(source):
            names.update(re.findall(r"\w+", group))
        for cmd in _COMMAND.findall(source):
            out[cmd] = frozenset(names)
    for cmd, shape in QUERY_SHAPES.items():
        out[cmd] = out[cmd] | frozenset(shape.model_fields)
    return out


@dataclass(frozen=True)
class LargeBody:
    """A body of `size` bytes, made when sent (hypothesis does not draw megabytes)."""

    size: int
    kind: str  # "json-string", "json-array", "form", "spaces"

    def render(self) -> bytes:
        if self.kind == "json-string":
            return b'{"title": "' + b"a" * max(0, self.size - 14) + b'"}'
        if self.kind == "json-array":
            return b"[" + b"0," * max(0, (self.size - 3) // 2) + b"0]"
        if self.kind == "form":
            return b"name=a&val=" + b"1" * max(0, self.size - 11)
        return b" " * self.size


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    cmd: str  # the value of the first `cmd=` (usually a command of the table)
    params: tuple[tuple[QueryValue, QueryValue | None], ...]  # after cmd=, in order
    body: bytes | LargeBody
    content_type: str | None
    auth: str  # "none", "admin", "wrong", "user", "garbage", "bearer", "latin"
    transfer: str  # "plain", "chunked", "gzip", "bad-gzip", "unknown-encoding"
    path: bytes = b"/cnf"

    @property
    def command(self) -> str | None:
        """The command the server runs (the first cmd, stripped), if it is one."""
        name = self.cmd.strip()
        return name if name in COMMANDS else None

    def describe(self) -> str:
        body = self.body if isinstance(self.body, bytes) else repr(self.body)
        return (f"{self.method} {render_target(self)[:300]!r} ctype={self.content_type!r} "
                f"auth={self.auth} transfer={self.transfer} body={body[:300]!r}"
                f"{' …' if len(body) > 300 else ''}")


def _encode(value: QueryValue) -> bytes:
    if isinstance(value, RawPart):
        return value.data
    return quote(value.encode("utf-8", "surrogatepass"), safe="").encode()


def encode_pairs(pairs: tuple[tuple[QueryValue, QueryValue | None], ...]) -> bytes:
    return b"&".join(_encode(k) + (b"" if v is None else b"=" + _encode(v)) for k, v in pairs)


def render_target(req: FuzzRequest) -> bytes:
    query = b"cmd=" + _encode(req.cmd)
    if req.params:
        query += b"&" + encode_pairs(req.params)
    return req.path + b"?" + query


def _auth_header(auth: str) -> bytes:
    def basic(raw: bytes) -> bytes:
        return b"Authorization: Basic " + base64.b64encode(raw) + b"\r\n"

    return {
        "none": b"",
        "admin": basic(b"admin:" + ADMIN_PASSWORD.encode()),
        "wrong": basic(b"admin:not the password"),
        "user": basic(b"root:" + ADMIN_PASSWORD.encode()),
        "garbage": b"Authorization: Basic !!!not base64\r\n",
        "bearer": b"Authorization: Bearer abc\r\n",
        "latin": basic(b"admin:\xff\xfe"),
    }[auth]


def render(req: FuzzRequest) -> bytes:
    """The request's bytes, `Connection: close`."""
    body = req.body.render() if isinstance(req.body, LargeBody) else req.body
    head = [req.method.encode() + b" " + render_target(req) + b" HTTP/1.1",
            b"Host: 127.0.0.1", b"Connection: close"]
    if req.content_type is not None:
        head.append(b"Content-Type: " + req.content_type.encode("latin-1", "replace"))
    if req.transfer == "gzip":
        body = gzip.compress(body, compresslevel=1)
        head.append(b"Content-Encoding: gzip")
    elif req.transfer == "bad-gzip":
        head.append(b"Content-Encoding: gzip")
    elif req.transfer == "unknown-encoding":
        head.append(b"Content-Encoding: x-nothing")
    if req.transfer == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        step = 65_536
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                        for i in range(0, len(body), step)) + b"0\r\n\r\n"
    elif body or req.method == "POST":
        head.append(b"Content-Length: %d" % len(body))
    auth = _auth_header(req.auth)
    return b"\r\n".join(head) + b"\r\n" + auth + b"\r\n" + body


# --- bodies ------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as such, lone surrogates as
    `\\ud800`, and an object given as key-value pairs may repeat a key."""
    if isinstance(value, Pairs):
        return b"{" + b",".join(dumps(k) + b":" + dumps(v) for k, v in value) + b"}"
    return json.dumps(value, allow_nan=True).encode()


def _mutate(body: bytes, how: tuple[str, int]) -> bytes:
    kind, n = how
    if kind == "truncate":
        return body[: n % (len(body) + 1)]
    if kind == "wrap":
        return b"[" * n + body + b"]" * n
    if kind == "insert":
        at = n % (len(body) + 1)
        junk = RAW_FRAGMENTS[n % len(RAW_FRAGMENTS)] + b"\xed\xa0\x80\xc0\xaf"
        return body[:at] + junk + body[at:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + body
    if kind == "utf16":
        return body.decode("utf-8", "replace").encode("utf-16")
    if kind == "garbage":
        return body + b"}]" * n
    return body


mutations = weighted(
    (6, st.just(("none", 0))),
    (2, st.tuples(st.sampled_from(["truncate", "insert", "bom", "utf16", "garbage"]),
                  st.integers(0, 1000))),
    (1, st.tuples(st.just("wrap"), st.sampled_from([1, 63, 64, 65, 1000, 100_000]))),
)


def _json_body(cmd: str) -> st.SearchStrategy[bytes]:
    obj = BODY_OBJECTS.get(cmd)
    value = json_any if obj is None else weighted((4, obj), (1, json_any))
    return st.tuples(value, mutations).map(lambda vm: _mutate(dumps(vm[0]), vm[1]))


def _definition_body() -> st.SearchStrategy[bytes]:
    def text(pairs: Pairs, style: int) -> bytes:
        body = dumps(pairs)
        if style == 1:
            return b"// uploaded by the fuzzer\n" + body[:-1] + b",}"
        if style == 2:
            return body.replace(b'"rtype": 1', b"rtype: 0x1")
        return body

    return st.tuples(meter_definitions, st.integers(0, 2), mutations).map(
        lambda d: _mutate(text(d[0], d[1]), d[2]))


def _param_pairs(cmd: str) -> st.SearchStrategy[list[tuple[QueryValue, QueryValue | None]]]:
    """Each parameter the command's module reads, or not (a third of the time), and random
    ones; in a random order, and sometimes one of them twice (the first counts)."""
    names = sorted(read_parameters().get(cmd, frozenset()))
    known = st.tuples(*(weighted((1, st.none()),
                                 (2, st.tuples(st.just(n), query_value(n, cmd))))
                        for n in names)).map(lambda ps: [p for p in ps if p is not None])
    other = st.lists(st.tuples(st.one_of(texts, query_any),
                               st.one_of(st.none(), query_any)),  # also a name without `=`
                     max_size=2)
    return st.tuples(known, other).flatmap(lambda ko: st.permutations(ko[0] + ko[1])).flatmap(
        lambda ps: st.sampled_from([ps, ps, ps + ps[:1]]))


_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded",
                  "application/x-www-form-urlencoded; charset=latin-1",
                  "application/x-www-form-urlencoded; charset=raw_unicode_escape",
                  "application/x-www-form-urlencoded; charset=\x00", "text/plain",
                  "multipart/form-data; boundary=xyz", "application/json; charset=utf-16",
                  "", ";;;", "application/x-www-form-urlencoded; charset=" + "x" * 300]


@st.composite
def _body(draw: st.DrawFn, cmd: str) -> tuple[bytes | LargeBody, str | None]:
    kinds = ["none", "json", "json", "json", "definition", "form", "raw", "large"]
    if cmd in BODY_OBJECTS:
        kinds += ["json"] * 4
    elif cmd == "set_meter_def":
        kinds += ["definition"] * 4
    kind = draw(st.sampled_from(kinds))
    ctype: str | None = "application/json"
    body: bytes | LargeBody
    if kind == "none":
        body, ctype = b"", draw(st.sampled_from([None, "application/json"]))
    elif kind == "json":
        body = draw(_json_body(cmd))
    elif kind == "definition":
        body = draw(_definition_body())
    elif kind == "form":
        pairs = tuple(draw(_param_pairs(cmd)))
        body, ctype = encode_pairs(pairs), "application/x-www-form-urlencoded"
    elif kind == "raw":
        body = draw(st.binary(max_size=64))
    else:
        size = draw(st.sampled_from([BODY_LIMIT - 64, BODY_LIMIT + 1, 3 * BODY_LIMIT]))
        body = LargeBody(size, draw(st.sampled_from(["json-string", "json-array", "form",
                                                     "spaces"])))
        ctype = "application/x-www-form-urlencoded" if body.kind == "form" else ctype
    if draw(st.sampled_from([False, False, False, False, True])):
        ctype = draw(st.sampled_from([None, *_CONTENT_TYPES]))
    return body, ctype


@st.composite
def requests(draw: st.DrawFn, commands: tuple[str, ...], auths: tuple[str, ...]
             ) -> FuzzRequest:
    """One hostile request to one of `commands` (as written, or padded with spaces)."""
    name = draw(st.sampled_from(commands))
    cmd = draw(st.sampled_from([name] * 8 + [f" {name}\t", name.upper()]))
    method = draw(st.sampled_from(["GET", "POST", "POST"]))
    params = tuple(draw(_param_pairs(name)))
    body, ctype = draw(_body(name)) if method == "POST" else (b"", None)
    if method == "GET" and draw(st.sampled_from([False, False, False, True])):
        body, ctype = draw(_body(name))  # a body with GET is not read
    transfer = draw(st.sampled_from(["plain"] * 6 + ["chunked", "gzip", "bad-gzip",
                                                     "unknown-encoding"]))
    if not body:
        transfer = "plain"
    path = draw(st.sampled_from([b"/cnf"] * 18 + [b"//cnf", b"/cnf/", b"/CNF"]))
    return FuzzRequest(method, cmd, params, body, ctype, draw(st.sampled_from(auths)),
                       transfer, path)
