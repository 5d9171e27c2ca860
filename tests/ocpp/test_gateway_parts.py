"""The gateway's pure parts: the backend's charging profiles and the limit they make at a
moment, and the bounded queue of what the backend is to be told."""

from __future__ import annotations

from typing import Any

import pytest

from chargebrain.servers.ocpp.messages import iso
from chargebrain.servers.ocpp.outbox import METER, STATUS, TRANSACTION, Outbox, Outgoing
from chargebrain.servers.ocpp.profiles import ProfileBook, ProfileRefused, parse

T0 = 1_717_372_800.0  # 2024-06-03 00:00 UTC, a Monday


def profile(purpose: str = "TxDefaultProfile", kind: str = "Relative", level: int = 0,
            periods: tuple[tuple[int, float], ...] = ((0, 16.0),), unit: str = "A",
            pid: int = 1, **extra: Any) -> dict[str, Any]:
    schedule: dict[str, Any] = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": s, "limit": limit} for s, limit in periods]}
    for key in ("startSchedule", "duration"):
        if key in extra:
            schedule[key] = extra.pop(key)
    return {"chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule, **extra}


def test_relative_periods_follow_the_transaction_start() -> None:
    book = ProfileBook()
    book.install(parse(1, profile(periods=((0, 10.0), (600, 6.0)))))
    assert book.limit_ma(1, T0) == 10_000  # no transaction: its first period
    assert book.limit_ma(1, T0 + 100, tx_start=T0) == 10_000
    assert book.limit_ma(1, T0 + 700, tx_start=T0) == 6_000
    assert book.limit_ma(2, T0) is None


def test_absolute_and_recurring_schedules_and_their_duration() -> None:
    book = ProfileBook()
    book.install(parse(0, profile(kind="Absolute", pid=1, startSchedule=iso(T0 + 3600),
                                  duration=1800, periods=((0, 8.0),))))
    assert book.limit_ma(1, T0) is None  # not begun
    assert book.limit_ma(1, T0 + 3700) == 8_000
    assert book.limit_ma(1, T0 + 5500) is None  # over
    daily = profile(kind="Recurring", pid=2, level=1, recurrencyKind="Daily",
                    startSchedule=iso(T0 + 18 * 3600), periods=((0, 6.0), (4 * 3600, 32.0)))
    book.install(parse(0, daily))
    assert book.limit_ma(1, T0 + 86_400 * 3 + 19 * 3600) == 6_000  # 19:00, three days on
    assert book.limit_ma(1, T0 + 86_400 * 3 + 23 * 3600) == 32_000


def test_the_charge_point_maximum_caps_and_tx_profiles_beat_defaults() -> None:
    book = ProfileBook()
    book.install(parse(0, profile(pid=1, periods=((0, 20.0),))))
    book.install(parse(1, profile(pid=2, level=2, periods=((0, 12.0),))))
    assert book.limit_ma(1, T0) == 12_000  # the connector's own, higher level
    assert book.limit_ma(2, T0) == 20_000
    book.install(parse(1, profile("TxProfile", pid=3, periods=((0, 25.0),))), running_tx=5)
    assert book.limit_ma(1, T0, tx_start=T0) == 25_000
    book.install(parse(0, profile("ChargePointMaxProfile", pid=4, periods=((0, 11040.0),),
                                  unit="W")))
    assert book.limit_ma(1, T0, tx_start=T0) == 16_000  # 11040 W over 3 × 230 V
    book.transaction_ended(1)
    assert book.limit_ma(1, T0) == 12_000
    assert book.clear(connector=0) and book.limit_ma(2, T0) is None
    assert not book.clear(profile_id=99)


def test_what_the_charge_point_refuses() -> None:
    book = ProfileBook()
    with pytest.raises(ProfileRefused):
        book.install(parse(1, profile("TxProfile")), running_tx=None)
    with pytest.raises(ProfileRefused):
        parse(1, profile("ChargePointMaxProfile"))
    with pytest.raises(ProfileRefused):
        parse(1, profile(level=9))
    with pytest.raises(ProfileRefused):
        parse(1, profile(kind="Absolute"))  # no start
    with pytest.raises(ProfileRefused):
        parse(1, profile(periods=((60, 6.0),)))


def _item(kind: str, connector: int = 1, at: float = 0.0) -> Outgoing:
    return Outgoing(kind, kind, connector, at, lambda: {})


def test_a_full_queue_thins_meter_values_and_never_drops_transactions() -> None:
    box = Outbox(capacity=10)
    box.put(_item(TRANSACTION, at=0))
    for n in range(1, 30):
        box.put(_item(METER, at=n))
    box.put(_item(TRANSACTION, at=30))
    kinds = [it.kind for it in box]
    assert kinds[0] == TRANSACTION and kinds[-1] == TRANSACTION
    assert len(box) <= 10 and box.dropped > 0
    stamps = [it.at for it in box if it.kind == METER]
    assert stamps == sorted(stamps) and stamps[0] < 10 and stamps[-1] > 20  # still spread
    for n in range(20):
        box.put(_item(STATUS, connector=n % 2, at=40 + n))
    statuses = [(it.connector, it.at) for it in box if it.kind == STATUS]
    assert statuses[-2:] == [(0, 58), (1, 59)]  # the latest per connector stay
    for n in range(20):
        box.put(_item(TRANSACTION, at=60 + n))
    assert sum(1 for it in box if it.kind == TRANSACTION) == 22
