"""Which clients may use Modbus TCP: the allowed networks, checked on real sockets with
the client's source address bound (127.0.0.1 and 127.0.0.2 are both this machine)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from pymodbus.client import AsyncModbusTcpClient

from chargebrain.powerbrain.controller import PowerBrain
from chargebrain.servers.access import AccessList
from tests.servers.test_modbus_contract import closed_by_server, fc3, frame, start_servers


def test_parse_and_match() -> None:
    allow = AccessList.parse("192.168.1.0/24, 10.0.0.7 ,fd00::/8")
    assert str(allow) == "192.168.1.0/24,10.0.0.7/32,fd00::/8"
    assert allow.allows("192.168.1.200")
    assert allow.allows("::ffff:192.168.1.5")  # IPv4 on an IPv6 socket
    assert allow.allows("10.0.0.7") and not allow.allows("10.0.0.8")
    assert allow.allows("fd12::1") and not allow.allows("fe80::1%eth0")
    assert not allow.allows("192.168.2.1") and not allow.allows("not an address")
    assert AccessList.parse("192.168.1.5/24") == AccessList.parse("192.168.1.0/24")
    for bad in ("", " , ", "192.168.1.0/33", "example.org", "192.168.1.0/24,x"):
        with pytest.raises(ValueError):
            AccessList.parse(bad)


def test_the_default_is_this_machine_and_private_networks() -> None:
    local = AccessList.local()
    for inside in ("127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "172.16.0.1",
                   "192.168.178.20", "169.254.3.4", "fd00::5", "fe80::1%eth0"):
        assert local.allows(inside), inside
    for outside in ("8.8.8.8", "172.32.0.1", "100.64.0.1", "2001:db8::1"):
        assert not local.allows(outside), outside
    assert not local.reaches_public()
    assert not AccessList.parse("192.168.1.0/24,127.0.0.2").reaches_public()
    assert AccessList.parse("0.0.0.0/0").reaches_public()
    assert AccessList.parse("192.168.1.0/24,::/0").reaches_public()


def read_from(source: str, port: int) -> bytes:
    """One FC3 request from `source` to 127.0.0.1:port; the answer, or b"" if the server
    closed the connection."""
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(frame(1, 1, fc3(8000, 2)))
            return sock.recv(1024)
        except ConnectionError:
            return b""


async def test_only_allowed_clients_are_served(caplog: pytest.LogCaptureFixture) -> None:
    brain = PowerBrain(store=None)
    brain.start()
    servers = await start_servers(brain, access=AccessList.parse("127.0.0.2/32"))
    port = servers.ports[0]
    try:
        with caplog.at_level(logging.DEBUG, logger="chargebrain.modbus"):
            for _ in range(20):
                assert await asyncio.to_thread(read_from, "127.0.0.1", port) == b""
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 20
        assert len([r for r in refused if r.levelno >= logging.INFO]) == 1  # no flood
        answer = await asyncio.to_thread(read_from, "127.0.0.2", port)
        assert answer[7:] == bytes.fromhex("0304cf050000")
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0,
                                      source_address=("127.0.0.2", 0))
        try:
            assert await client.connect()
            rr = await client.read_holding_registers(8092, count=2, device_id=1)
            assert not rr.isError()
            assert not (await client.write_register(8093, 100, device_id=1)).isError()
        finally:
            client.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(1, 1, fc3(8000, 2)))
        assert await closed_by_server(reader)
        writer.close()
        assert brain.banks["evse"].get("charging_cur_limit") == 100
    finally:
        await servers.stop()
