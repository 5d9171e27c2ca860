"""Where a device described by a definition is reached: Modbus links and HTTP bases.

A Modbus address is one of
* `host`, `host:port`, `[v6]:port`, `tcp://host:port`: Modbus TCP (port 502 by default);
* `rtu://host:port`, `ascii://host:port`: RTU or ASCII frames carried over TCP (a
  transparent RS-485 gateway, no port default);
* a serial line: `COM3`, `/dev/ttyUSB0`, `ttyS1`, optionally with `,baud,data bits,parity,
  stop bits` (`/dev/ttyUSB0,38400,8,E,1`) and a leading `rtu:` or `ascii:`; what the
  address leaves out comes from the definition (its `rtu` settings and `framing`).

Devices on the same link share one adapter (`shared_adapter` / `release_adapter`):
several wallboxes on one RS-485 bus, or behind one gateway that takes one connection,
must not open it twice. An adapter is shared within one event loop and closed when its
last user lets it go.

This module must never import pymodbus (adapters come from `modbus_client`).
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from dataclasses import dataclass

from chargebrain.devices.errors import DeviceError
from chargebrain.devices.modbus_client import (
    DEFAULT_PORT,
    ModbusClientAdapter,
    ModbusTcpClientAdapter,
)
from chargebrain.devices.modbus_serial import ModbusSerialClientAdapter

__all__ = [
    "ModbusLink",
    "parse_http_base",
    "parse_modbus_address",
    "parse_modbus_link",
    "release_adapter",
    "shared_adapter",
]

_SERIAL_RE = re.compile(r"(?i)^(?:com\d+(?:$|[,:\s])|/dev/|tty[a-z]*\d+(?:$|,))|,")
_FRAMING_RE = re.compile(r"(?i)^(rtu|ascii|tcp)(?::(?://)?)")


@dataclass(frozen=True, slots=True)
class ModbusLink:
    """A Modbus TCP endpoint, a serial gateway carrying `framing` over TCP, or a serial
    line (`device` set)."""

    framing: str  # "tcp", "rtu" or "ascii"
    host: str = ""
    port: int = 0
    device: str = ""
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def serial(self) -> bool:
        return bool(self.device)

    def __str__(self) -> str:
        if self.serial:
            return (f"{self.framing}:{self.device},{self.baudrate},{self.bytesize},"
                    f"{self.parity},{self.stopbits}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = "" if self.framing == "tcp" else f"{self.framing}://"
        return f"{prefix}{host}:{self.port}"

    def adapter(self, timeout: float, *, connect_timeout: float | None = None,
                delay_after_connect: float = 0.0) -> ModbusClientAdapter:
        """A new adapter for this link."""
        if self.serial:
            return ModbusSerialClientAdapter(
                self.device, self.baudrate, self.bytesize, self.parity, self.stopbits,
                timeout, framing=self.framing)
        return ModbusTcpClientAdapter(self.host, self.port, timeout, framing=self.framing,
                                      connect_timeout=connect_timeout,
                                      delay_after_connect=delay_after_connect)


def parse_modbus_address(address: str) -> tuple[str, int]:
    """`"192.168.1.5:502"`, `"meter.local"`, `"[fe80::1]:1502"` → (host, port) of a Modbus
    TCP address; a serial line is refused here (see `parse_modbus_link`)."""
    text = address.strip()
    if not text:
        raise DeviceError("Modbus address is empty; expected host or host:port")
    if _SERIAL_RE.search(text):
        raise DeviceError(f"Modbus address {address!r} names a serial line, not host:port")
    if text.lower().startswith("tcp://"):
        text = text[6:]
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise DeviceError(f"Modbus address {address!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise DeviceError(f"Modbus address {address!r}: ':port' expected after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(ch.isspace() or ch in "/?#@" for ch in host):
        raise DeviceError(f"Modbus address {address!r}: bad host; expected host or host:port")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise DeviceError(f"Modbus address {address!r}: port must be 1..65535")
        port = int(port_text)
    return host, port


def _serial(address: str, text: str, framing: str,
            defaults: tuple[int, int, str, int]) -> ModbusLink:
    parts = [p.strip() for p in text.split(",")]
    device = parts[0]
    if re.fullmatch(r"(?i)tty[a-z]*\d+", device):
        device = "/dev/" + device
    if not device or any(ch.isspace() for ch in device):
        raise DeviceError(f"Modbus address {address!r}: no serial device")
    if len(parts) > 5:
        raise DeviceError(f"Modbus address {address!r}: expected device,baud,data,parity,stop")
    baud, size, parity, stop = defaults
    try:
        if len(parts) > 1 and parts[1]:
            baud = int(parts[1])
        if len(parts) > 2 and parts[2]:
            size = int(parts[2])
        if len(parts) > 3 and parts[3]:
            parity = parts[3].upper()
        if len(parts) > 4 and parts[4]:
            stop = int(parts[4])
    except ValueError:
        raise DeviceError(f"Modbus address {address!r}: baud, data and stop bits are "
                          "numbers") from None
    if not 300 <= baud <= 4_000_000 or size not in (7, 8) or parity not in ("N", "E", "O") \
            or stop not in (1, 2):
        raise DeviceError(f"Modbus address {address!r}: serial settings out of range "
                          "(baud 300..4000000, data bits 7/8, parity N/E/O, stop bits 1/2)")
    return ModbusLink(framing, device=device, baudrate=baud, bytesize=size, parity=parity,
                      stopbits=stop)


def parse_modbus_link(address: str, *, framing: str = "rtu",
                      serial: tuple[int, int, str, int] = (9600, 8, "N", 1)) -> ModbusLink:
    """The link an address names. `framing` and `serial` (baud, data bits, parity, stop
    bits) are what a serial line uses when the address does not say."""
    text = address.strip()
    match = _FRAMING_RE.match(text)
    chosen = match.group(1).lower() if match else None
    rest = text[match.end():] if match else text
    if _SERIAL_RE.search(rest):
        if chosen == "tcp":
            raise DeviceError(f"Modbus address {address!r}: a serial line is not Modbus TCP")
        return _serial(address, rest, chosen or framing, serial)
    if chosen in ("rtu", "ascii"):
        if not match or "//" not in match.group(0):
            raise DeviceError(f"Modbus address {address!r}: write {chosen}://host:port for "
                              "a serial gateway, or a serial device")
        if not re.search(r":\d+$", rest.strip()):
            raise DeviceError(f"Modbus address {address!r}: a serial gateway needs its port")
        host, port = parse_modbus_address(rest)
        return ModbusLink(chosen, host=host, port=port)
    host, port = parse_modbus_address(rest)
    return ModbusLink("tcp", host=host, port=port)


def parse_http_base(address: str) -> str:
    """`"http://host:port"`, `"host:port"` or `"host"` → base URL without trailing slash."""
    text = address.strip()
    if not text:
        raise DeviceError("HTTP address is empty; expected http://host:port or host:port")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise DeviceError(
            f"HTTP address {address!r} is not usable; expected http://host:port or host:port"
        )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


# -- shared adapters ---------------------------------------------------------------------

_SHARED: dict[tuple[int, ModbusLink], tuple[ModbusClientAdapter, int]] = {}


def shared_adapter(link: ModbusLink, timeout: float, *, connect_timeout: float | None = None,
                   delay_after_connect: float = 0.0) -> ModbusClientAdapter:
    """The adapter of `link` in the running event loop, made on first use; every call
    must be matched by one `release_adapter`."""
    key = (id(asyncio.get_running_loop()), link)
    known = _SHARED.get(key)
    if known is not None:
        _SHARED[key] = (known[0], known[1] + 1)
        return known[0]
    adapter = link.adapter(timeout, connect_timeout=connect_timeout,
                           delay_after_connect=delay_after_connect)
    _SHARED[key] = (adapter, 1)
    return adapter


async def release_adapter(adapter: ModbusClientAdapter) -> None:
    """Let a shared adapter go; the last user closes it."""
    for key, (known, users) in list(_SHARED.items()):
        if known is adapter:
            if users > 1:
                _SHARED[key] = (known, users - 1)
                return
            del _SHARED[key]
            break
    await adapter.close()
