"""The broker address: `mqtt://user:password@host:port`, and how it is shown.

Schemes as the vendor's: `mqtt` (MQTT 3.1.1, port 1883), `mqtt3` and `mqtt5` (the
protocol version), `mqtts`, `mqtts3` and `mqtts5` (the same over TLS, port 8883). User
and password come from the URL (percent-encoded). Two query parameters concern TLS:
`cafile=PATH` (trust this CA file besides the system's) and `insecure=1` (no check of
the broker's certificate). Anything else is refused with a message naming it.

Pure: no sockets, no library. The password is never part of `str()` of a parsed URL
nor of `masked()`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

#: Scheme → (MQTT protocol version, TLS).
SCHEMES: dict[str, tuple[int, bool]] = {
    "mqtt": (3, False),
    "mqtt3": (3, False),
    "mqtt5": (5, False),
    "mqtts": (3, True),
    "mqtts3": (3, True),
    "mqtts5": (5, True),
}
PLAIN_PORT = 1883
TLS_PORT = 8883
MAX_URL = 500
#: What `masked` writes instead of a password.
HIDDEN = "***"


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message says why (never the password)."""


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker address."""

    host: str
    port: int
    version: int = 3  # 3 = MQTT 3.1.1, 5 = MQTT 5
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    insecure: bool = False
    text: str = field(default="", repr=False, compare=False)  # as given

    def __str__(self) -> str:
        return masked(self.text) if self.text else f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """host:port, for log lines."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    """The broker address in `text`; raises BrokerUrlError."""
    if len(text) > MAX_URL:
        raise BrokerUrlError(f"longer than {MAX_URL} characters")
    stripped = text.strip()
    if not stripped:
        raise BrokerUrlError("empty")
    if any(ord(ch) < 32 or ch.isspace() for ch in stripped):
        raise BrokerUrlError("contains spaces or control characters")
    parts = urllib.parse.urlsplit(stripped)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BrokerUrlError(
            f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}, "
            "as in mqtt://user:password@192.168.1.10:1883")
    version, tls = SCHEMES[scheme]
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise BrokerUrlError("the port must be a number 1..65535") from None
    if not host:
        raise BrokerUrlError("the broker's host is missing")
    if port == 0:
        raise BrokerUrlError("the port must be a number 1..65535")
    if parts.path not in ("", "/") or parts.fragment:
        raise BrokerUrlError("a path is not allowed after the host")
    options = _options(parts.query)
    return BrokerUrl(
        host=host, port=port or (TLS_PORT if tls else PLAIN_PORT), version=version, tls=tls,
        username=urllib.parse.unquote(parts.username) if parts.username is not None else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        cafile=options.get("cafile") or None,
        insecure=options.get("insecure", "0").lower() in ("1", "true", "yes", "on"),
        text=stripped)


def _options(query: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise BrokerUrlError("the query after '?' is not key=value pairs") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in ("cafile", "insecure"):
            raise BrokerUrlError(f"unknown option {key!r} (known: cafile, insecure)")
        out[key] = value
    return out


def masked(text: str) -> str:
    """`text` with the password replaced by HIDDEN (unchanged if it has none or is not a
    URL): what anyone may be shown."""
    try:
        parts = urllib.parse.urlsplit(text)
        if parts.password is None:
            return text
    except ValueError:
        return text
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urllib.parse.urlunsplit(
        (parts.scheme, f"{user}:{HIDDEN}@{hostinfo}", parts.path, parts.query, parts.fragment))
