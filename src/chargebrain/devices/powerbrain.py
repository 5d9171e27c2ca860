"""Drivers for Power Brain controllers: the built-in one and others over Modbus TCP.

The built-in controller is reached through its register banks (the same validated path
as any Modbus client, so the manager's writes also refresh the fail-safe timer); another
controller at `IP:port` through the Modbus client adapter. Register numbers are the
controller's map (docs/registers.md).
"""

from __future__ import annotations

from chargebrain.core.model import EvseCommand, EvseReading, EvseState, MeterReading
from chargebrain.core.phases import Phases
from chargebrain.devices.errors import DeviceError
from chargebrain.devices.modbus_client import ModbusTcpClientAdapter
from chargebrain.powerbrain.bank import RegisterBank, RegisterError
from chargebrain.powerbrain.controller import S0_PHASE_SWITCH_PLUGGED
from chargebrain.powerbrain.registers import words_to_signed, words_to_str, words_to_unsigned

INTERNAL_ADDRESSES = ("evse", "meter1", "meter2")
#: Seconds the control pilot is switched off to wake a car (register 8086), as evcc does.
WAKE_CP_OFF_S = 5
CP_TO_STATE = {
    0: EvseState.WAITING,
    1: EvseState.EV_PRESENT,
    2: EvseState.CHARGING,
    3: EvseState.CHARGING_VENT,
    4: EvseState.ERROR,
    5: EvseState.ERROR,
}


POWERBRAIN_TYPES = ("evse_powerbrain", "meter_powerbrain")


def internal_address(address: str) -> str | None:
    """'evse', 'meter1' or 'meter2' for the built-in devices ('evse:' as firmware 2.x)."""
    a = address.strip().rstrip(":").lower()
    return a if a in INTERNAL_ADDRESSES else None


def address_form(dev_type: str, address: str) -> str:
    """The address as firmware 2.x has it: `evse:`, `meter1:`, `meter2:` for the built-in
    devices (older versions of chargebrain stored `evse`, `meter1`); others unchanged."""
    internal = internal_address(address) if dev_type in POWERBRAIN_TYPES else None
    return f"{internal}:" if internal else address


def _limit_words(command: EvseCommand) -> tuple[int, int]:
    """(charging_enable, charging_cur_limit in 0.1 A)."""
    if not command.enabled or command.current_ma < 6000:
        return 0, 60
    return 1, max(60, min(630, command.current_ma // 100))


def _meter_block(words: list[int]) -> tuple[Phases, float, float]:
    """Decode 8057..8069: (currents mA, power W, energy Wh)."""
    energy = words_to_unsigned(words[1:5])
    power = words_to_signed(words[5:7])
    currents = [words_to_signed(words[7 + 2 * i : 9 + 2 * i]) * 100 for i in range(3)]
    return Phases.of(currents), float(max(power, 0)), float(energy)


class _EvseDecoder:
    """Turns the EVSE registers into a reading, noticing new RFID reads."""

    def __init__(self) -> None:
        self._rfid_count: int | None = None
        self.model = ""

    def decode(self, meter: list[int], status: list[int], rfid_count: int,
               relay: int | None = None, inputs: int = 0) -> EvseReading:
        """The reading of 8057..8069 (`meter`), 8090..8110 (`status`) and 8111; with
        `relay` (8087) and `inputs` (8113) also the phase contactor."""
        currents, power, energy = _meter_block(meter)
        cp = status[2] & 0xFF
        rfid = ""
        if self._rfid_count is not None and rfid_count != self._rfid_count:
            rfid = words_to_str(status[6:21])
        self._rfid_count = rfid_count
        return EvseReading(
            state=CP_TO_STATE.get(cp, EvseState.ERROR),
            currents=currents,
            power_w=power,
            total_energy_wh=energy,
            has_meter=True,
            max_current_ma=status[5] * 100,
            rfid=rfid,
            model=self.model,
            one_phase=None if relay is None else relay == 1,
            phase_switching=bool(inputs & S0_PHASE_SWITCH_PLUGGED),
        )


class LocalEvse:
    """The built-in EVSE."""

    def __init__(self, bank: RegisterBank, model: str) -> None:
        self.bank = bank
        self._decoder = _EvseDecoder()
        self._decoder.model = model

    async def read(self) -> EvseReading:
        return self.read_now()

    def read_now(self) -> EvseReading:
        """The reading, taken from the registers at once (no I/O)."""
        b = self.bank
        meter = b.read_words(8057, 13)
        status = b.read_words(8090, 21)
        return self._decoder.decode(meter, status, b.get("detected_rfids"),
                                    b.get("relay_select"), b.get("s0_inputs"))

    async def apply(self, command: EvseCommand) -> None:
        enable, limit = _limit_words(command)
        try:
            if enable:
                self.bank.write_words(8093, [limit])
            self.bank.write_words(8094, [enable])
            if command.phases in (1, 3):
                self.bank.write_words(8087, [1 if command.phases == 1 else 0])
            if command.wake:
                self.bank.write_words(8086, [WAKE_CP_OFF_S])
        except RegisterError as exc:
            raise DeviceError(f"EVSE rejected the command: {exc.message}") from None

    async def close(self) -> None:
        return None


class LocalMeter:
    """A built-in S0 meter."""

    def __init__(self, bank: RegisterBank, model: str) -> None:
        self.bank = bank
        self.model = model

    async def read(self) -> MeterReading:
        return self.read_now()

    def read_now(self) -> MeterReading:
        """The reading, taken from the registers at once (no I/O)."""
        b = self.bank
        currents, power, energy = _meter_block(b.read_words(8057, 13))
        volts = (float(b.get("voltage_l1")), float(b.get("voltage_l2")), float(b.get("voltage_l3")))
        return MeterReading(
            power_w=power, currents=currents, voltages=volts, import_wh=energy, model=self.model
        )

    async def close(self) -> None:
        return None


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    text = address.strip()
    for prefix in ("modbus://", "tcp://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        number = int(port)
    except ValueError:
        raise DeviceError(f"{address!r}: {port!r} is not a port number") from None
    if not 0 < number < 65536 or not host:
        raise DeviceError(f"{address!r} is not IP:port")
    return host.strip("[]"), number


def meter_unit(address: str) -> int:
    """The Modbus unit of the S0 meter of another controller at `address`: meter 2 answers
    as unit 3 on port 4703, meter 1 as unit 2 (on 4702, the default)."""
    try:
        _, port = parse_host_port(address, 4702)
    except DeviceError:
        return 2
    return 3 if port == 4703 else 2


class RemoteEvse:
    """The EVSE of another Power Brain controller over Modbus TCP. With `contactor` its
    phase contactor is read too (8087 and 8113, two more requests per read)."""

    def __init__(self, address: str, unit: int, timeout: float = 2.0,
                 contactor: bool = False) -> None:
        host, port = parse_host_port(address, 4701)
        self.unit = unit
        self.contactor = contactor
        self.client = ModbusTcpClientAdapter(host, port, timeout)
        self._decoder = _EvseDecoder()

    async def read(self) -> EvseReading:
        if not self._decoder.model:
            ident = await self.client.read_holding(self.unit, 8008, 24)
            serial, name = words_to_str(ident[0:8]), words_to_str(ident[8:24])
            self._decoder.model = f"{name},{serial}"
        meter = await self.client.read_holding(self.unit, 8057, 13)
        status = await self.client.read_holding(self.unit, 8090, 22)
        if not self.contactor:
            return self._decoder.decode(meter, status[:21], status[21])
        relay = await self.client.read_holding(self.unit, 8087, 1)
        inputs = await self.client.read_holding(self.unit, 8113, 1)
        return self._decoder.decode(meter, status[:21], status[21], relay[0], inputs[0])

    async def apply(self, command: EvseCommand) -> None:
        enable, limit = _limit_words(command)
        if enable:
            await self.client.write_register(self.unit, 8093, limit)
        await self.client.write_register(self.unit, 8094, enable)
        if command.phases in (1, 3):
            await self.client.write_register(self.unit, 8087, 1 if command.phases == 1 else 0)
        if command.wake:
            await self.client.write_register(self.unit, 8086, WAKE_CP_OFF_S)

    async def close(self) -> None:
        await self.client.close()


class RemoteMeter:
    """An S0 meter of another Power Brain controller over Modbus TCP."""

    def __init__(self, address: str, unit: int, timeout: float = 2.0) -> None:
        host, port = parse_host_port(address, 4702)
        self.unit = unit
        self.client = ModbusTcpClientAdapter(host, port, timeout)

    async def read(self) -> MeterReading:
        words = await self.client.read_holding(self.unit, 8044, 4)
        currents, power, energy = _meter_block(await self.client.read_holding(self.unit, 8057, 13))
        return MeterReading(
            power_w=power,
            currents=currents,
            voltages=(float(words[1]), float(words[2]), float(words[3])),
            import_wh=energy,
            model="cFos Power Brain S0",
        )

    async def close(self) -> None:
        await self.client.close()
