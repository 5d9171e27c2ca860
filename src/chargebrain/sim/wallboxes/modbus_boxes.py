"""Simulated Modbus wallboxes, each after its maker's register documentation.

* `Heidelberg` (Energy Control, RS-485 RTU): input registers 4..18 (state codes 2..11,
  currents in 0.1 A, voltages, power, energy), holding 257 watchdog (ms: without any
  request for that long the fail-safe current 262 applies), 258 standby, 259 remote lock,
  261 maximum current in 0.1 A (0, or 60..160, else exception 03).
* `Abl` (eMH1, RS-485 ASCII): holding 0x0004 state (low byte 0xA1.. 0xF*, high byte the
  id), 0x002E..0x0032 state, duty cycle and currents in 0.1 A (1 and 1000 mean "none"),
  write-only 0x0005 (0xE0E0 outlet off, 0xA1A1 on) and 0x0014 (duty cycle: current /
  0.06 A, 1000 = 100 % = no charging); it misses the first frame after a quiet second.
* `Alfen` (Eve, Modbus TCP): floats (306.. voltages, 320.. currents in A, 344 power),
  374 energy as a 64-bit float, 1201 the mode-3 state as text ("C2"), 1210 the current as
  a float, valid for 60 s (1208) before the safe current applies, 1215 phases.
* `Amtron` (Mennekes HCC3, Modbus TCP): input 0x0302 state 1..8, 0x0308 phases, 32-bit
  values low word first (0x030D session energy, 0x030F power), holding 0x0400 the
  current in A (0: pause).
* `Phoenix` (EV-CC-AC1 "EV-ETH", and Wallbe's firmware of it): input 100 the state as an
  ASCII letter, 32-bit values low word first, coil 400 enables charging, holding 528 the
  current in A (Wallbe: 0.1 A).
* `SmartEvse` (v2/v3 Modbus RTU): input 0x0103 state in the low byte, currents and
  voltages in 1/256 A and V, energy 1/256 kWh low word first; holding 0x0201 the current
  packed twice (high byte and low byte, in A).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from chargebrain.sim.wallboxes.base import (
    SimWallbox,
    double_words,
    float_words,
    str_words,
    u32_words,
)
from chargebrain.sim.wallboxes.modbus_server import ModbusException

__all__ = ["Abl", "Alfen", "Amtron", "Heidelberg", "Phoenix", "SmartEvse"]


def _one(values: Sequence[int]) -> int:
    if len(values) != 1:
        raise ModbusException(2)
    return values[0]


class Heidelberg(SimWallbox):
    dev_type = "evse_heidelberg"

    def __init__(self, unit: int = 1, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.watchdog_s = 15.0
        self.standby = 0
        self.unlocked = 1

    def _code(self) -> int:
        allowed = self.offered_ma() > 0
        cp = self.cp()
        if cp == "A":
            return 3 if allowed else 2
        if cp == "B":
            return 5 if allowed else 4
        return 7

    def image(self, func: int) -> dict[int, int]:
        if func == 4:
            i = self.currents_ma()
            energy = round(self.energy_wh)
            out = {4: 0x0108, 5: self._code(), 9: 255, 13: 1, 14: round(self.power_w()),
                   100: 16, 101: 6}
            out.update({6 + k: round(i[k] / 100) for k in range(3)})
            out.update({10 + k: round(self.voltage) for k in range(3)})
            out.update(zip((15, 16), u32_words(energy), strict=True))
            out.update(zip((17, 18), u32_words(energy), strict=True))
            return out
        if func == 3:
            return {257: round(self.watchdog_s * 1000), 258: self.standby, 259: self.unlocked,
                    261: self.limit_ma // 100, 262: self.failsafe_ma // 100}
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        if func not in (6, 16):
            raise ModbusException(1)
        value = _one(values)
        if address == 261:
            if value != 0 and not 60 <= value <= 160:
                raise ModbusException(3)
            self.limit_ma = value * 100
        elif address == 262:
            if value != 0 and not 60 <= value <= 160:
                raise ModbusException(3)
            self.failsafe_ma = value * 100
        elif address == 257:
            self.watchdog_s = value / 1000
        elif address == 258:
            self.standby = value
        elif address == 259:
            if value == 0:
                self.interrupt_cp()
            self.unlocked = value
        else:
            raise ModbusException(2)


_ABL_NONE = 1000  # 100 % duty cycle: no charging, and "no value" in the current registers


class Abl(SimWallbox):
    dev_type = "evse_abl_emh1"

    def __init__(self, unit: int = 1, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.duty = _ABL_NONE
        self.outlet_off = False
        self.wake_drop = True  # misses the first frame after a quiet second
        self._last_frame = -1e9
        self.enabled = True

    def offered_ma(self) -> int:
        if self.outlet_off or self.duty >= _ABL_NONE or not self.enabled:
            return 0
        return round(self.duty * 60)  # duty in 0.1 %: current = duty cycle / 0.06 A

    def _state(self) -> int:
        if self.outlet_off:
            return 0xE0
        return {"A": 0xA1, "B": 0xB1 if self.offered_ma() == 0 else 0xB2,
                "C": 0xC2}[self.cp()]

    def awake(self) -> bool:
        """Whether this frame is answered (the bus wakes with the first one)."""
        t = self.now()
        quiet = t - self._last_frame > 1.0
        self._last_frame = t
        return not (self.wake_drop and quiet)

    def image(self, func: int) -> dict[int, int]:
        if func != 3:
            return {}
        i = self.currents_ma()
        state = (self.unit << 8) | self._state()
        out = {1: 0x0211, 2: 0x0120, 4: state,
               0x000F: state, 0x0010: 0, 0x0011: 0, 0x0012: 0, 0x0013: self.duty,
               0x002E: state, 0x002F: self.duty}
        out.update({0x0030 + k: (round(i[k] / 100) or _ABL_NONE) for k in range(3)})
        return out

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        value = _one(values)
        if address == 0x0014:
            if value != _ABL_NONE and not 80 <= value <= 970:
                raise ModbusException(3)
            self.duty = value
        elif address == 0x0005:
            if value == 0xE0E0:
                self.outlet_off = True
                self.interrupt_cp()
            elif value == 0xA1A1:
                self.outlet_off = False
            else:
                raise ModbusException(3)
        else:
            raise ModbusException(2)


class Alfen(SimWallbox):
    dev_type = "evse_alfen_evepro"
    VALID_S = 60.0

    def __init__(self, unit: int = 1, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.safe_ma = 6000
        self._set_at = -1e9

    def offered_ma(self) -> int:
        expired = self.now() - self._set_at > self.VALID_S
        limit = self.safe_ma if expired else self.limit_ma
        return limit if limit >= 6000 else 0

    def image(self, func: int) -> dict[int, int]:
        if func != 3:
            return {}
        i = self.currents_ma()
        out: dict[int, int] = {}
        for k in range(3):
            out.update(zip((306 + 2 * k, 307 + 2 * k), float_words(self.voltage), strict=True))
            out.update(zip((320 + 2 * k, 321 + 2 * k), float_words(i[k] / 1000), strict=True))
        out.update(zip((344, 345), float_words(self.power_w()), strict=True))
        out.update(zip(range(374, 378), double_words(self.energy_wh), strict=True))
        state = {"A": "A", "B": "B1" if self.offered_ma() == 0 else "B2", "C": "C2"}[self.cp()]
        out.update(zip(range(1201, 1206), str_words(state, 5), strict=True))
        out.update(zip((1206, 1207), float_words(self.offered_ma() / 1000), strict=True))
        out.update(zip((1208, 1209), u32_words(int(self.VALID_S)), strict=True))
        out.update(zip((1210, 1211), float_words(self.limit_ma / 1000), strict=True))
        out.update(zip((1212, 1213), float_words(self.safe_ma / 1000), strict=True))
        out[1215] = self.phases
        return out

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        if address == 1210 and len(values) == 2 and func == 16:
            raw = (values[0] << 16) | values[1]
            amps = struct.unpack(">f", raw.to_bytes(4, "big"))[0]
            if not 0 <= amps <= 32:
                raise ModbusException(3)
            self.limit_ma = round(amps * 1000)
            self._set_at = self.now()
        elif address == 1215 and len(values) == 1:
            if values[0] not in (1, 3):
                raise ModbusException(3)
            self.phases = values[0]
        else:
            raise ModbusException(2)


class Amtron(SimWallbox):
    dev_type = "evse_mennekes_hcc3"

    def image(self, func: int) -> dict[int, int]:
        if func == 4:
            allowed = self.offered_ma() > 0
            code = {"A": 1, "B": 3, "C": 5}[self.cp()] + (1 if allowed else 0)
            out = {0x0302: code, 0x0308: min(self.phases, self.car_phases)}
            out.update(zip((0x030D, 0x030E), u32_words(round(self.session_wh), True), strict=True))
            out.update(zip((0x030F, 0x0310), u32_words(round(self.power_w()), True), strict=True))
            return out
        if func == 3:
            return {0x0400: self.limit_ma // 1000}
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        value = _one(values)
        if address != 0x0400:
            raise ModbusException(2)
        if value != 0 and not 6 <= value <= 32:
            raise ModbusException(3)
        self.limit_ma = value * 1000


class Phoenix(SimWallbox):
    """Phoenix Contact's EV-ETH controller; `wallbe` for Wallbe's firmware (0.1 A)."""

    dev_type = "evse_phoenix_ev_eth"

    def __init__(self, unit: int = 255, wallbe: bool = False, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.wallbe = wallbe
        self.enabled = False
        if wallbe:
            self.dev_type = "evse_wallbe"

    def image(self, func: int) -> dict[int, int]:
        if func == 1:
            return {400: 1 if self.enabled else 0}
        if func == 4:
            i = self.currents_ma()
            out = {100: ord(self.cp())}
            for k in range(3):
                out.update(zip((108 + 2 * k, 109 + 2 * k),
                               u32_words(round(self.voltage), True), strict=True))
                out.update(zip((114 + 2 * k, 115 + 2 * k),
                               u32_words(round(i[k] / 1000), True), strict=True))
            out.update(zip((120, 121), u32_words(round(self.power_w()), True), strict=True))
            return out
        if func == 3:
            scale = 100 if self.wallbe else 1000
            out = {528: self.limit_ma // scale}
            if self.wallbe:
                raw = round(self.energy_wh)
                out.update({2980 + k: (raw >> (16 * k)) & 0xFFFF for k in range(4)})
            else:
                out.update(zip((904, 905), u32_words(round(self.energy_wh), True), strict=True))
            return out
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        value = _one(values)
        if func == 5 and address == 400:
            self.enabled = bool(value)
        elif func in (6, 16) and address == 528:
            amps = value / 10 if self.wallbe else value
            if not 6 <= amps <= 32:
                raise ModbusException(3)
            self.limit_ma = round(amps * 1000)
        else:
            raise ModbusException(2)


class SmartEvse(SimWallbox):
    dev_type = "evse_smartevse"

    def image(self, func: int) -> dict[int, int]:
        if func == 4:
            i = self.currents_ma()
            out = {0x0103: {"A": 1, "B": 2, "C": 3}[self.cp()] | 0x0100,
                   0x0104: 30, 0x0108: round(self.session_wh / 1000 * 256)}
            out.update({0x0105 + k: round(i[k] / 1000 * 256) for k in range(3)})
            out.update({0x0109 + k: round(self.voltage * 256) & 0xFFFF for k in range(3)})
            raw = round(self.energy_wh / 1000 * 256)
            out.update(zip((0x010D, 0x010E), u32_words(raw, True), strict=True))
            return out
        if func == 3:
            amps = self.limit_ma // 1000
            return {0x0201: (amps << 8) | amps}
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        value = _one(values)
        if address != 0x0201:
            raise ModbusException(2)
        low, high = value & 0xFF, value >> 8
        if low != high or (low and not 6 <= low <= 80):
            raise ModbusException(3)
        self.limit_ma = low * 1000
