"""Observe-mode control of wallboxes from outside: the orders of `<prefix>/ctl`.

In observe mode (`lb_enabled` false) the charging manager decides but writes nothing;
an outside energy manager may then set each EVSE's current, enable, wake-up and phases
with `{"E1": {"cur": 16000, "ena": true, "wke": false, "phs": 3}, …}`. Each order is
written at once through the EVSE's own driver, the path the manager's writer takes in
load-management mode (the built-in controller's registers 8093/8094/8086/8087, another
Power Brain's over Modbus TCP), and get_dev_info shows it as `last_set_charging_cur`.

* Keys left out keep the value of the EVSE's last order: `cur` starts at the EVSE's
  minimum current, `ena` at true. `wke` (a control-pilot interruption to wake the car)
  and `phs` (1 or 3 phases, a switch request) act once, when sent.
* `cur` below 6000 mA means charging off; above the EVSE's `max_charging_cur` (a number)
  it is lowered to it: the wallbox's rating is kept whoever commands.
* With load management on, the orders are refused (the manager writes the wallboxes);
  so are HTTP-input EVSEs (their feeder takes its orders from set_ajax_evse answers) and
  EVSEs that are not there.

The fail-safe of a wallbox is fed by each write: an outside manager that stops sending
leaves the wallbox to its fail-safe current after its fail-safe time, as it should.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chargebrain.core.model import EvseCommand
from chargebrain.devices.ajax import AjaxEvse
from chargebrain.devices.errors import DeviceError

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager
    from chargebrain.manager.state import DeviceRuntime

MIN_CURRENT_MA = 6000
MAX_CURRENT_MA = 2_000_000
WRITE_TIMEOUT_S = 5.0
KEYS = frozenset({"cur", "ena", "wke", "phs"})


@dataclass(frozen=True)
class Order:
    """What an EVSE was last told through ctl."""

    current_ma: int
    enabled: bool = True


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false")


def _parse(orders: Any, last: Order, max_ma: int | None) -> tuple[Order, int, bool]:
    """(the new order, phases to switch to or 0, wake) from one EVSE's object."""
    if not isinstance(orders, dict):
        raise ValueError("an object with cur, ena, wke, phs is required")
    unknown = sorted(set(orders) - KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0][:20]!r} (known: cur, ena, wke, phs)")
    order = last
    if "cur" in orders:
        cur = orders["cur"]
        if isinstance(cur, bool) or not isinstance(cur, int | float) or not (
                0 <= cur <= MAX_CURRENT_MA):
            raise ValueError(f"cur must be a current in mA, 0..{MAX_CURRENT_MA}")
        order = replace(order, current_ma=round(cur))
    if "ena" in orders:
        order = replace(order, enabled=_bool(orders["ena"], "ena"))
    phases = 0
    if "phs" in orders:
        phases = orders["phs"]
        if isinstance(phases, bool) or phases not in (1, 3):
            raise ValueError("phs must be 1 or 3")
    wake = _bool(orders["wke"], "wke") if "wke" in orders else False
    if max_ma is not None and order.current_ma > max_ma:
        order = replace(order, current_ma=max_ma)
    return order, int(phases), wake


class ExternalControl:
    """Writes ctl orders to the EVSEs (see the module's docstring)."""

    def __init__(self, manager: ChargingManager) -> None:
        self.manager = manager
        self.orders: dict[str, Order] = {}

    async def apply(self, doc: dict[str, Any]) -> list[str]:
        """Write the orders of `doc`; the problems (one line each) of those not written."""
        mgr = self.manager
        if mgr.site.lb_enabled:
            return ["ignored: load management is on (lb_enabled); ctl orders are taken "
                    "in observe mode only"]
        problems: list[str] = []
        writes = []
        for key, orders in doc.items():
            dev_id = str(key).strip().upper()
            rt = mgr.devices.get(dev_id)
            if rt is None or rt.evse is None or rt.driver is None:
                problems.append(f"{str(key)[:20]}: no such EVSE")
                continue
            if isinstance(rt.driver, AjaxEvse):
                problems.append(f"{dev_id}: an HTTP-input EVSE takes its orders from the "
                                "answers to set_ajax_evse")
                continue
            limit = rt.config.max_charging_cur
            max_ma = limit if isinstance(limit, int) and limit > 0 else None
            last = self.orders.get(dev_id, Order(rt.config.min_charging_cur))
            try:
                order, phases, wake = _parse(orders, last, max_ma)
            except ValueError as exc:
                problems.append(f"{dev_id}: {exc}")
                continue
            self.orders[dev_id] = order
            on = order.enabled and order.current_ma >= MIN_CURRENT_MA
            command = EvseCommand(enabled=on, current_ma=order.current_ma if on else 0,
                                  phases=phases, wake=wake)
            writes.append(self._write(rt, command))
        for problem in await asyncio.gather(*writes):
            if problem:
                problems.append(problem)
        return problems

    async def _write(self, rt: DeviceRuntime, command: EvseCommand) -> str:
        driver, ev = rt.driver, rt.evse
        assert driver is not None and ev is not None
        try:
            await asyncio.wait_for(driver.apply(command),  # type: ignore[union-attr]
                                   timeout=WRITE_TIMEOUT_S)
        except (DeviceError, TimeoutError, OSError) as exc:
            return f"{rt.dev_id}: writing failed: {exc}"
        ev.last_set_ma = command.current_ma
        ev.last_command = replace(command, phases=0, wake=False)
        ev.last_write = self.manager.clock.monotonic()
        self.manager.signal.changed()
        return ""
