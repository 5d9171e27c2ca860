"""The Power Brain controller: one EVSE and two S0 meters, their state in register banks.

`tick(dt)` runs the controller's firmware logic once: disconnect countdown, the phase
contactor (`phase_switch.py`), fail-safe, what to offer the car, and the measurements
(pilot state, attached meter, S0 pulses, card reader) written back into the banks. Writes
coming in through any view go through the banks' validation; their side effects and
persistence are handled here, as is the hardware configuration (phase switching) kept
in the store's settings.

No sockets and no clock reads: the caller passes the elapsed time and the monotonic now.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from chargebrain.powerbrain.bank import RegisterBank
from chargebrain.powerbrain.hardware import (
    CpState,
    EvseHardware,
    PilotOutput,
    S0Hardware,
    SimEvseHardware,
    SimS0Input,
)
from chargebrain.powerbrain.phase_switch import (
    CP_OFF_RANGE_S,
    DEFAULT_DELAY_S,
    PhaseContactor,
    PhaseSwitchSettings,
)
from chargebrain.powerbrain.registers import BY_NAME, Dev, Kind, Register, major_minor
from chargebrain.store.db import Store

log = logging.getLogger("chargebrain.powerbrain")

DEVICE_NAMES = ("evse", "meter1", "meter2")
VENDOR_ID = 0xCF05
NO_PULSE_POWER_TIMEOUT_S = 600.0  # after this long without a pulse the power reads 0
COUNTER_SAVE_PERIOD_S = 60.0
#: Settings key of the phase-switching configuration ({"plugged": bool, "cp_off_s": int}).
PHASE_SWITCH_KEY = "phase_switching"
# Register 8113: bit 8 = switching phases while plugged in is permitted, bit 9 = bit 10
# is valid, bit 10 = a second relay is present, bit 11 = relay 2 was written over Modbus.
S0_PHASE_SWITCH_PLUGGED = 1 << 8
S0_RELAY2_KNOWN = (1 << 9) | (1 << 10)
S0_RELAY2_EXTERNAL = 1 << 11


@dataclass(frozen=True)
class Identity:
    product_id: int = 1
    device_id: int = 0x0101
    version: tuple[int, int] = (1, 0)
    build: int = 0
    mapping_version: tuple[int, int] = (1, 0)
    product_name: str = "cFos Power Brain"


def new_serial() -> str:
    """A serial number in the documented shape, e.g. 'fcf5-c46d-310c'."""
    h = secrets.token_hex(6)
    return f"{h[0:4]}-{h[4:8]}-{h[8:12]}"


@dataclass
class _MeterState:
    """Hidden state of a meter block that the registers only show rounded."""

    energy_wh: float = 0.0
    pulse_fraction: float = 0.0
    last_pulse_age: float | None = None  # seconds since the last pulse, None = none yet
    time_per_pulse_ms: int = 0


DEFAULTS: dict[str, dict[str, int]] = {
    "evse": {
        "slave_id": 1, "pulsesperkwh": 1000, "phases": 7, "voltage_l1": 230,
        "voltage_l2": 230, "voltage_l3": 230, "def_fixed_current": 0,
        "def_charg_cur_limit": 160, "def_charging_enable": 1, "fail_safe_duration": 300,
        "fail_safe_current": 60, "input": 1,
    },
    "meter1": {"slave_id": 2, "pulsesperkwh": 1000, "phases": 1, "voltage_l1": 230,
               "voltage_l2": 230, "voltage_l3": 230, "input": 1},
    "meter2": {"slave_id": 3, "pulsesperkwh": 1000, "phases": 1, "voltage_l1": 230,
               "voltage_l2": 230, "voltage_l3": 230, "input": 1},
}

# Counters that change all the time: persisted periodically and at shutdown, not per pulse.
COUNTERS = ("pulses", "energy")


class PowerBrain:
    """The controller: three register banks, the hardware, and the firmware logic."""

    def __init__(
        self,
        store: Store | None = None,
        hardware: EvseHardware | None = None,
        s0_inputs: tuple[S0Hardware, S0Hardware] | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.store = store
        self.hardware: EvseHardware = hardware or SimEvseHardware()
        self.s0: tuple[S0Hardware, S0Hardware] = s0_inputs or (SimS0Input(), SimS0Input())
        self.identity = identity or Identity()
        self.banks: dict[str, RegisterBank] = {
            "evse": RegisterBank(Dev.EVSE),
            "meter1": RegisterBank(Dev.METER),
            "meter2": RegisterBank(Dev.METER),
        }
        self._meters = {name: _MeterState() for name in DEVICE_NAMES}
        self._now: float | None = None  # monotonic time of the last tick
        self._last_access: float | None = None
        self._disconnect_left = 0.0
        self._contactor = PhaseContactor()
        self.phase_switching = PhaseSwitchSettings()
        #: Least seconds between two contactor changes (the application sets it).
        self.phase_switch_delay_s = DEFAULT_DELAY_S
        self._fail_safe = False
        self._since_save = 0.0
        self.serial = ""
        for name, bank in self.banks.items():
            bank.on_write = self._write_hook(name)
        self.banks["evse"].on_access = self._touch

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Load persisted registers, count the restart, apply the after-restart defaults."""
        stored: dict[str, dict[str, int]] = {}
        if self.store is not None:
            self.serial = str(self.store.get_setting("serial_no") or "")
            name = self.store.get_setting("product_name")
            if name:
                self.identity = Identity(**{**self.identity.__dict__, "product_name": name})
            for dev in DEVICE_NAMES:
                stored[dev] = self.store.load_registers(dev)
            self.phase_switching = _phase_settings(self.store.get_setting(PHASE_SWITCH_KEY))
        if not self.serial:
            self.serial = new_serial()
            if self.store is not None:
                self.store.set_setting("serial_no", self.serial)
        for dev, bank in self.banks.items():
            self._init_identity(bank)
            values = {**DEFAULTS[dev], **stored.get(dev, {})}
            for reg_name, value in values.items():
                if reg_name in BY_NAME and BY_NAME[reg_name] in bank.registers:
                    bank.set(reg_name, value)
            restarts = values.get("count_restart", 0) + 1
            bank.set("count_restart", restarts)
            bank.set("power", -1 if dev != "evse" else 0)
            self._meters[dev].energy_wh = float(values.get("energy", 0))
            if self.store is not None:
                self.store.save_registers(dev, {"count_restart": restarts})
        evse = self.banks["evse"]
        evse.set("charging_cur_limit", evse.get("def_charg_cur_limit"))
        evse.set("charging_enable", evse.get("def_charging_enable"))
        evse.set("fixed_current", evse.get("def_fixed_current"))
        evse.set("has_meter", 1)
        evse.set("meter_flags", 1)
        for dev in ("meter1", "meter2"):
            self.banks[dev].set("meter_flags", 0)
        self._set_s0_inputs(levels=0)
        self._last_access = None
        log.info(
            "controller started: serial %s, restart #%d", self.serial,
            evse.get("count_restart"),
        )

    def _init_identity(self, bank: RegisterBank) -> None:
        ident = self.identity
        bank.set("vendor_id", VENDOR_ID << 16)
        bank.set("product_id", ident.product_id)
        bank.set("device_id", ident.device_id)
        bank.set("product_version", (major_minor(*ident.version) << 16) | ident.build)
        bank.set("mapping_version", major_minor(*ident.mapping_version))
        bank.set_str("serial_no", self.serial)
        bank.set_str("name", ident.product_name)

    def set_product_name(self, name: str) -> None:
        self.identity = Identity(**{**self.identity.__dict__, "product_name": name})
        for bank in self.banks.values():
            bank.set_str("name", name)
        if self.store is not None:
            self.store.set_setting("product_name", name)

    def configure_phase_switching(self, settings: PhaseSwitchSettings) -> None:
        """Set (and keep in the store) the hardware configuration of phase switching."""
        self.phase_switching = settings
        if self.store is not None:
            self.store.set_setting(
                PHASE_SWITCH_KEY, {"plugged": settings.plugged, "cp_off_s": settings.cp_off_s}
            )
        self._set_s0_inputs(self.banks["evse"].get("s0_inputs") & 0b11)
        log.info(
            "phase switching while plugged in %s, control pilot off for %d s",
            "permitted" if settings.plugged else "not permitted", settings.cp_off_s,
        )

    def save_counters(self) -> None:
        if self.store is None:
            return
        for dev, bank in self.banks.items():
            self.store.save_registers(dev, {c: bank.get(c) for c in COUNTERS})

    # --- write side effects ------------------------------------------------------------

    def _touch(self) -> None:
        self._last_access = self._now
        if self._fail_safe:
            self._fail_safe = False
            log.info("Modbus communication resumed: fail-safe ended")

    def _write_hook(self, dev: str):  # type: ignore[no-untyped-def]
        def hook(reg: Register, value: int) -> None:
            self._after_write(dev, reg, value)

        return hook

    def _after_write(self, dev: str, reg: Register, value: int) -> None:
        bank = self.banks[dev]
        meter = self._meters[dev]
        if reg.name == "reset_pulses":
            if value == 1:
                bank.set("pulses", 0)
            bank.set("reset_pulses", 0)
            self._persist(dev, {"pulses": 0} if value == 1 else {})
            return
        if reg.name == "reset_energy":
            if value == 1:
                bank.set("energy", 0)
                meter.energy_wh = 0.0
            bank.set("reset_energy", 0)
            self._persist(dev, {"energy": 0} if value == 1 else {})
            return
        if reg.name == "energy":
            meter.energy_wh = float(value)
        if reg.name == "disconnect_cp":
            self._disconnect_left = float(value)
            self._show_cp_off()
        if reg.name == "relay_select":
            self._switch_contactor(self._now or 0.0)
        if reg.name == "relay2":
            bank.set("s0_inputs", bank.get("s0_inputs") | S0_RELAY2_EXTERNAL)
        if reg.name == "pulsesperkwh":
            meter.pulse_fraction = 0.0
        if not reg.volatile and reg.kind is not Kind.STR:
            self._persist(dev, {reg.name: value})

    def _persist(self, dev: str, values: dict[str, int]) -> None:
        if self.store is not None and values:
            self.store.save_registers(dev, values)

    # --- the firmware cycle ------------------------------------------------------------

    @property
    def fail_safe_active(self) -> bool:
        return self._fail_safe

    @property
    def cp_interrupted(self) -> bool:
        """The control pilot is switched off now (a `disconnect_cp` write or a phase switch
        under a plugged car, counting down)."""
        return self._disconnect_left > 0 or self._contactor.cp_off_left > 0

    @property
    def one_phase(self) -> bool:
        """The 1-phase contactor is the one in use (not only asked for in 8087)."""
        return self._contactor.one_phase

    def offered_ma(self) -> int:
        """The current the pilot offers the car now (0 = not allowed to charge)."""
        evse = self.banks["evse"]
        if evse.get("charging_enable") != 1 or self.cp_interrupted:
            return 0
        limit = evse.get("charging_cur_limit")
        if self._fail_safe:
            limit = evse.get("fail_safe_current")
        fixed = evse.get("fixed_current")
        cable = fixed if fixed else evse.get("cable_current")
        if cable:
            limit = min(limit, cable)
        return limit * 100 if limit >= 60 else 0

    def tick(self, dt: float, now: float | None = None) -> None:
        """Advance the controller by `dt` seconds (monotonic `now`, if given)."""
        mono = now if now is not None else (self._now or 0.0) + dt
        self._now = mono
        if self._last_access is None:
            self._last_access = mono
        evse = self.banks["evse"]
        # Disconnect countdown.
        if self._disconnect_left > 0:
            self._disconnect_left = max(0.0, self._disconnect_left - dt)
        # Fail-safe.
        duration = evse.get("fail_safe_duration")
        idle = mono - self._last_access
        if duration > 0 and not self._fail_safe and idle >= duration:
            self._fail_safe = True
            log.warning(
                "no Modbus access for %d s: fail-safe current %.1f A",
                duration, evse.get("fail_safe_current") / 10,
            )
        self.hardware.drive(
            PilotOutput(
                offered_ma=self.offered_ma(),
                cp_off=self.cp_interrupted,
                one_phase=self._contactor.one_phase,
                relay2=evse.get("relay2") == 1,
            )
        )
        sensed = self.hardware.step(dt)
        evse.set("charge_pilot_state", int(sensed.cp))
        # The contactor, on what was just sensed (a request held by the delay or until
        # no car is connected): used from the next step on.
        self._contactor.count_down(dt)
        self._switch_contactor(mono)
        evse.set("cable_current", sensed.cable_ma // 100)
        self._measure_evse(sensed.currents_ma, dt)
        rfid = self.hardware.take_rfid()
        if rfid:
            self._card_read(rfid)
        levels = 0
        for i, dev in enumerate(("meter1", "meter2")):
            self._measure_s0(dev, self.s0[i].pulses(dt, self.banks[dev].get("pulsesperkwh")), dt)
            if self.banks[dev].get("level") == 0:
                levels |= 1 << i
        self._set_s0_inputs(levels)
        self._since_save += dt
        if self._since_save >= COUNTER_SAVE_PERIOD_S:
            self._since_save = 0.0
            self.save_counters()

    def _switch_contactor(self, now: float) -> None:
        """Carry out the contactor request of 8087 if it may be now; 8086 shows the
        pilot-off time a switch under a plugged car has left."""
        evse = self.banks["evse"]
        self._contactor.carry_out(
            requested_one_phase=evse.get("relay_select") == 1,
            car_connected=evse.get("charge_pilot_state") != CpState.A,
            settings=self.phase_switching,
            delay_s=self.phase_switch_delay_s,
            now=now,
        )
        self._show_cp_off()

    def _show_cp_off(self) -> None:
        """8086 reads the seconds the pilot stays off: a disconnect or a phase switch."""
        cp_off_s = max(self._disconnect_left, self._contactor.cp_off_left)
        self.banks["evse"].set("disconnect_cp", int(cp_off_s + 0.999))

    def _set_s0_inputs(self, levels: int) -> None:
        """Register 8113: the S0 input `levels` (bits 0, 1) and the capability bits."""
        evse = self.banks["evse"]
        bits = (evse.get("s0_inputs") & S0_RELAY2_EXTERNAL) | levels | S0_RELAY2_KNOWN
        if self.phase_switching.plugged:
            bits |= S0_PHASE_SWITCH_PLUGGED
        evse.set("s0_inputs", bits)

    def _card_read(self, rfid: str) -> None:
        evse = self.banks["evse"]
        # Right-aligned so that readers which strip leading NULs see no trailing NULs.
        evse.set_str("last_rfid", rfid[-30:].rjust(30, "\0"))
        evse.set("detected_rfids", (evse.get("detected_rfids") + 1) & 0xFFFF)
        log.info("RFID card read at the controller: %s", rfid)

    def _add_energy(self, dev: str, wh: float) -> None:
        bank = self.banks[dev]
        meter = self._meters[dev]
        meter.energy_wh += wh
        bank.set("energy", int(meter.energy_wh))

    def _measure_evse(self, currents_ma: tuple[int, int, int], dt: float) -> None:
        evse = self.banks["evse"]
        volts = [evse.get("voltage_l1"), evse.get("voltage_l2"), evse.get("voltage_l3")]
        power = sum(c / 1000.0 * v for c, v in zip(currents_ma, volts, strict=True))
        for i, c in enumerate(currents_ma):
            evse.set(f"current_l{i + 1}", round(c / 100))
        evse.set("power", round(power))
        evse.set("charging_current", round(max(currents_ma) / 100))
        wh = power * dt / 3600.0
        self._add_energy("evse", wh)
        meter = self._meters["evse"]
        meter.pulse_fraction += wh * evse.get("pulsesperkwh") / 1000.0
        whole = int(meter.pulse_fraction)
        if whole:
            meter.pulse_fraction -= whole
            evse.set("pulses", evse.get("pulses") + whole)

    def _measure_s0(self, dev: str, offsets: list[float], dt: float) -> None:
        bank = self.banks[dev]
        meter = self._meters[dev]
        ppk = bank.get("pulsesperkwh")
        if offsets:
            if len(offsets) > 1:
                meter.time_per_pulse_ms = max(1, round((offsets[-1] - offsets[-2]) * 1000))
            elif meter.last_pulse_age is not None:
                meter.time_per_pulse_ms = max(1, round((meter.last_pulse_age + offsets[0]) * 1000))
            meter.last_pulse_age = dt - offsets[-1]
            bank.set("pulses", bank.get("pulses") + len(offsets))
            self._add_energy(dev, len(offsets) * 1000.0 / ppk)
        elif meter.last_pulse_age is not None:
            meter.last_pulse_age += dt
        bank.set("timeperpulse", meter.time_per_pulse_ms)
        bank.set("level", 0 if offsets else 1)
        if meter.last_pulse_age is None or meter.time_per_pulse_ms == 0:
            return  # power stays -1 until two pulses have given an interval
        if meter.last_pulse_age > NO_PULSE_POWER_TIMEOUT_S:
            power = 0.0
        else:
            # No more than one pulse's energy can have been used since the last pulse.
            interval_ms = max(meter.time_per_pulse_ms, meter.last_pulse_age * 1000)
            power = 3.6e9 / (ppk * interval_ms)
        bank.set("power", round(power))
        mask = bank.get("phases") & 7
        n = bin(mask).count("1") or 1
        for i in range(3):
            volts = bank.get(f"voltage_l{i + 1}")
            amps = power / n / volts if (mask >> i) & 1 and power > 0 else 0.0
            bank.set(f"current_l{i + 1}", round(amps * 10))


def _phase_settings(stored: object) -> PhaseSwitchSettings:
    """The phase-switching configuration as stored (defaults where it is missing)."""
    if not isinstance(stored, dict):
        return PhaseSwitchSettings()
    default = PhaseSwitchSettings()
    cp_off_s = stored.get("cp_off_s")
    lo, hi = CP_OFF_RANGE_S
    if not isinstance(cp_off_s, int) or not lo <= cp_off_s <= hi:
        cp_off_s = default.cp_off_s
    return PhaseSwitchSettings(plugged=stored.get("plugged") is True, cp_off_s=cp_off_s)
