"""Simulated Vestel EVC04 and Webasto Next (the same family of register maps).

* `Vestel` (EVC04, Modbus TCP, unit 255): input registers 1001 charging (0/1), 1004
  cable (0 none .. 3 vehicle connected and locked), currents in mA at 1008, 1010, 1012
  (the registers between them do not exist), voltages at 1014.., 1020 power (W, 32 bit),
  1036 energy (0.1 kWh), 1502 session energy (Wh); holding 2000 fail-safe current (A),
  2002 fail-safe timeout (s), 5004 charging current (A; 0 stops), 6000 alive: the master
  writes 1 and the box sets it back to 0; unless it is written within the timeout, the
  fail-safe current applies (reads do not count).
* `WebastoNext` (Modbus TCP, unit 255, all holding registers): 1000 charge point state
  (0 no vehicle, 1 vehicle connected, 3 charging, 4 paused, 7 error), currents in mA at
  1008.., 1020 power (W), 1036 energy (Wh), 1600 the user id (RFID, 10 registers of text),
  2000 fail-safe current, 2002 communication timeout (s), 5004 current (A), 6000 the
  life bit, fed as the Vestel's alive register.
"""

from __future__ import annotations

from collections.abc import Sequence

from chargebrain.sim.wallboxes.base import SimWallbox, str_words, u32_words
from chargebrain.sim.wallboxes.modbus_server import ModbusException

__all__ = ["Vestel", "WebastoNext"]


class Vestel(SimWallbox):
    dev_type = "evse_vestel_evc04"

    def __init__(self, unit: int = 255, **kw: object) -> None:
        super().__init__(unit, **kw)  # type: ignore[arg-type]
        self.watchdog_s = 20.0
        self.failsafe_ma = 6000
        self.alive = 0

    def contact(self) -> None:  # only the alive register feeds the watchdog
        self.advance()
        self.requests += 1

    def _cable(self) -> int:
        return 3 if self.car_plugged else 0

    def _common(self) -> dict[int, int]:
        i = self.currents_ma()
        out = {1001: 1 if self.cp() == "C" else 0, 1004: self._cable()}
        out.update({1008 + 2 * k: i[k] for k in range(3)})
        out.update({1014 + 2 * k: round(self.voltage) for k in range(3)})
        out.update(zip((1020, 1021), u32_words(round(self.power_w())), strict=True))
        return out

    def image(self, func: int) -> dict[int, int]:
        if func == 4:
            out = self._common()
            out.update(zip((1036, 1037), u32_words(round(self.energy_wh / 100)), strict=True))
            out.update(zip((1502, 1503), u32_words(round(self.session_wh)), strict=True))
            return out
        if func == 3:
            return {2000: self.failsafe_ma // 1000, 2002: round(self.watchdog_s),
                    5004: self.limit_ma // 1000, 6000: self.alive}
        return {}

    def on_write(self, func: int, address: int, values: Sequence[int]) -> None:
        if len(values) != 1:
            raise ModbusException(2)
        value = values[0]
        if address == 6000:
            self.last_contact = self.now()
            self.alive = 0  # the box clears it at once
        elif address == 5004:
            if value != 0 and not 6 <= value <= 32:
                raise ModbusException(3)
            self.limit_ma = value * 1000
        elif address == 2000:
            self.failsafe_ma = value * 1000
        elif address == 2002:
            self.watchdog_s = float(value)
        else:
            raise ModbusException(2)


class WebastoNext(Vestel):
    dev_type = "evse_webasto_next"

    def __init__(self, unit: int = 255, **kw: object) -> None:
        super().__init__(unit, **kw)

    def _state(self) -> int:
        cp = self.cp()
        if cp == "A":
            return 0
        if cp == "C":
            return 3
        return 4 if self.limit_ma == 0 else 1

    def image(self, func: int) -> dict[int, int]:
        if func != 3:
            return {}
        out = self._common()
        out[1000] = self._state()
        out.update(zip((1036, 1037), u32_words(round(self.energy_wh)), strict=True))
        out.update(zip(range(1600, 1610), str_words(self.rfid, 10), strict=True))
        out.update({2000: self.failsafe_ma // 1000, 2002: round(self.watchdog_s),
                    5004: self.limit_ma // 1000, 6000: self.alive})
        return out
