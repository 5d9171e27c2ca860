"""The adapter on its own, both sides over a real socket: calls and answers are checked
against the OCPP 1.6 schemas both ways, answers find their calls by id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from chargebrain.servers.ocpp.adapter import (
    Handshake,
    OcppFault,
    Payload,
    Peer,
    PeerClosed,
    Refusal,
    Transport,
    connect,
    serve,
)
from tests.conftest import free_ports


@dataclass
class Pair:
    central: Peer
    charge_point: Peer
    answers: dict[str, Payload]  # what the central system answers, by action


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    answers: dict[str, Payload] = {"Heartbeat": {"currentTime": "2024-05-01T10:00:00Z"}}
    ready: asyncio.Queue[Peer] = asyncio.Queue()

    async def central_handler(action: str, payload: Payload) -> Payload:
        return answers[action]

    async def welcome(cp_id: str, transport: Transport) -> None:
        peer = Peer(transport, central_handler, name=cp_id, call_timeout=0.5)
        await ready.put(peer)
        await peer.run()

    def gate(handshake: Handshake) -> str:
        if not handshake.path.endswith("/CP1"):
            raise Refusal(404, "unknown")
        return "CP1"

    async def cp_handler(action: str, payload: Payload) -> Payload:
        if action == "SetChargingProfile":
            await asyncio.sleep(float(payload["connectorId"]) / 10)  # type: ignore[arg-type]
            return {"status": "Accepted"}
        return {"status": "Unknown"}

    port = free_ports(1)
    listener = await serve("127.0.0.1", port, gate, welcome)
    transport = await connect(f"ws://127.0.0.1:{port}/x/CP1")
    cp = Peer(transport, cp_handler, name="test", call_timeout=0.5)
    runner = asyncio.create_task(cp.run())
    central = await asyncio.wait_for(ready.get(), 5)
    try:
        yield Pair(central, cp, answers)
    finally:
        await cp.close()
        await runner
        await listener.close()


def profile(connector: int, limit: float = 6.0) -> Payload:
    return {"connectorId": connector, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}}


async def test_calls_and_answers_are_checked_both_ways(pair: Pair) -> None:
    answer = await pair.charge_point.call("Heartbeat", {})
    assert answer == {"currentTime": "2024-05-01T10:00:00Z"}
    # An answer of ours that breaks the schema is not sent: the caller gets InternalError.
    pair.answers["Heartbeat"] = {"currentTime": 5}
    with pytest.raises(OcppFault) as info:
        await pair.charge_point.call("Heartbeat", {})
    assert info.value.code == "InternalError"
    # A call of ours that breaks the schema is not sent.
    with pytest.raises(ValueError, match="SetChargingProfile"):
        await pair.central.call("SetChargingProfile", profile(1, limit=6.05))
    assert (await pair.central.call("SetChargingProfile", profile(1))) == {"status": "Accepted"}


async def test_a_late_answer_is_not_taken_for_the_next_one(pair: Pair) -> None:
    with pytest.raises(TimeoutError):
        await pair.central.call("SetChargingProfile", profile(9))  # answers after 0.9 s
    await asyncio.sleep(0.6)  # the late answer arrives meanwhile and is dropped
    answer = await pair.central.call("ClearChargingProfile", {"id": 1}, timeout=5)
    assert answer == {"status": "Unknown"}


async def test_a_closed_connection_ends_calls(pair: Pair) -> None:
    await pair.charge_point.close()
    with pytest.raises(PeerClosed):
        for _ in range(50):
            await pair.central.call("ClearChargingProfile", {"id": 1})
            await asyncio.sleep(0.05)


async def test_connect_is_refused_for_an_unknown_path() -> None:
    port = free_ports(1)

    async def welcome(cp_id: str, transport: Transport) -> None:
        return None

    def gate(handshake: Handshake) -> str:
        raise Refusal(404, "unknown")

    listener = await serve("127.0.0.1", port, gate, welcome)
    try:
        with pytest.raises(PeerClosed, match="404"):
            await connect(f"ws://127.0.0.1:{port}/CP2")
    finally:
        await listener.close()
