"""The SunSpec models the charging manager publishes, declared once: points and encoding.

A model is a list of points (name, type, size in registers, access, unit, range); its
register image is built by `encode_model` from a mapping of point names to values, and
the same declaration gives the JSON model definitions of the custom models 60000–60002
(`json_definition`, the format SunSpec's own tools read) and the tables of
docs/sunspec.md. Values a point does not have are SunSpec's "not implemented" marks
(NaN for float32, 0xFFFF for uint16 and enum16, 0x8000 for int16, 0xFFFFFFFF for
bitfield32, NULs for strings).

Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BASE_ADDRESS = 40000
#: "SunS", the marker at the base address.
MARKER = (0x5375, 0x6E53)
END_MODEL = 0xFFFF
NAN_WORDS = (0x7FC0, 0x0000)

Value = float | int | str | None


@dataclass(frozen=True)
class Point:
    """One point of a model: `size` registers at `offset` from the model's ID register."""

    name: str
    type: str  # uint16, int16, enum16, bitfield32, float32, string, pad
    size: int
    label: str
    units: str = ""
    access: str = "R"  # "R" or "RW"
    minimum: float | None = None
    maximum: float | None = None
    desc: str = ""
    persisted: bool = True  # a write is kept across restarts


@dataclass(frozen=True)
class Model:
    """A model: its id, the points after ID and L, and an optional repeating group whose
    instances follow them (their number comes from the model's length)."""

    id: int
    name: str
    label: str
    points: tuple[Point, ...]
    repeat: tuple[Point, ...] = ()
    repeat_name: str = ""
    desc: str = ""
    extra: tuple[Point, ...] = ()  # the vendor's points after a standard model's end

    @property
    def fixed_length(self) -> int:
        """L of the model without repeating instances (the points after ID and L)."""
        return sum(p.size for p in self.points) + sum(p.size for p in self.extra)

    @property
    def repeat_length(self) -> int:
        return sum(p.size for p in self.repeat)

    def offsets(self) -> dict[str, tuple[int, Point]]:
        """Point name -> (offset from the model's ID register, point); fixed points only."""
        out: dict[str, tuple[int, Point]] = {}
        offset = 2
        for p in (*self.points, *self.extra):
            out[p.name] = (offset, p)
            offset += p.size
        return out


# --- encoding ----------------------------------------------------------------------------


def float_words(value: float | None) -> tuple[int, int]:
    if value is None or not math.isfinite(value):
        return NAN_WORDS
    try:
        raw = struct.pack(">f", value)
    except OverflowError:
        return NAN_WORDS
    hi, lo = struct.unpack(">HH", raw)
    return hi, lo


def words_float(words: Sequence[int]) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", words[0], words[1]))[0]
    return value


def string_words(text: str, size: int) -> list[int]:
    """Two bytes per register, the first in the high byte, NUL padded; UTF-8 cut at a
    character boundary to fit."""
    raw = text.encode("utf-8")[: 2 * size]
    while raw:
        try:
            raw.decode("utf-8")
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    raw = raw.ljust(2 * size, b"\0")
    return list(struct.unpack(f">{size}H", raw))


def point_words(point: Point, value: Value) -> list[int]:
    """The registers of `point` holding `value` (None: not implemented)."""
    kind = point.type
    if kind == "float32":
        return list(float_words(None if value is None else float(value)))
    if kind == "string":
        return string_words("" if value is None else str(value), point.size)
    if kind == "pad":
        return [0x8000] * point.size
    if kind == "bitfield32":
        v = 0xFFFFFFFF if value is None else int(value) & 0xFFFFFFFF
        return [v >> 16, v & 0xFFFF]
    if kind == "int16":
        return [0x8000 if value is None else int(value) & 0xFFFF]
    # uint16, enum16
    return [0xFFFF if value is None else int(value) & 0xFFFF]


def encode_model(model: Model, values: Mapping[str, Value],
                 repeats: Sequence[Mapping[str, Value]] = (), model_id: int | None = None,
                 ) -> list[int]:
    """The model's registers: ID, L, its points, then one instance of the repeating group
    per entry of `repeats`."""
    body: list[int] = []
    for p in (*model.points, *model.extra):
        body.extend(point_words(p, values.get(p.name)))
    for instance in repeats:
        for p in model.repeat:
            body.extend(point_words(p, instance.get(p.name)))
    return [model.id if model_id is None else model_id, len(body), *body]


def decode_point(point: Point, words: Sequence[int]) -> float:
    """A writable point's value from its registers (floats and 16-bit numbers)."""
    if point.type == "float32":
        return words_float(words)
    if point.type == "int16":
        return float(words[0] - 0x10000 if words[0] & 0x8000 else words[0])
    return float(words[0])


# --- the models --------------------------------------------------------------------------


def _f(name: str, label: str, units: str = "", **kw: Any) -> Point:
    return Point(name, "float32", 2, label, units, **kw)


COMMON = Model(1, "common", "Common", (
    Point("Mn", "string", 16, "Manufacturer"),
    Point("Md", "string", 16, "Model"),
    Point("Opt", "string", 8, "Options"),
    Point("Vr", "string", 8, "Version"),
    Point("SN", "string", 16, "Serial Number"),
    Point("DA", "uint16", 1, "Device Address"),
    Point("Pad", "pad", 1, "Pad"),
))

_PHASES = ("A", "B", "C")
_METER_POINTS: list[Point] = [
    _f("A", "Amps", "A"), *(_f(f"Aph{p}", f"Amps Phase{p}", "A") for p in _PHASES),
    _f("PhV", "Voltage LN", "V"), *(_f(f"PhVph{p}", f"Phase Voltage {p}N", "V") for p in _PHASES),
    _f("PPV", "Voltage LL", "V"), _f("PPVphAB", "Phase Voltage AB", "V"),
    _f("PPVphBC", "Phase Voltage BC", "V"), _f("PPVphCA", "Phase Voltage CA", "V"),
    _f("Hz", "Frequency", "Hz"),
    _f("W", "Watts", "W"), *(_f(f"Wph{p}", f"Watts phase {p}", "W") for p in _PHASES),
    _f("VA", "VA", "VA"), *(_f(f"VAph{p}", f"VA phase {p}", "VA") for p in _PHASES),
    _f("VAR", "VAR", "var"), *(_f(f"VARph{p}", f"VAR phase {p}", "var") for p in _PHASES),
    _f("PF", "PF", "PF"), *(_f(f"PFph{p}", f"PF phase {p}", "PF") for p in _PHASES),
]
for _kind, _unit in (("TotWhExp", "Wh"), ("TotWhImp", "Wh"), ("TotVAhExp", "VAh"),
                     ("TotVAhImp", "VAh")):
    _METER_POINTS.append(_f(_kind, _kind, _unit))
    _METER_POINTS.extend(_f(f"{_kind}Ph{p}", f"{_kind} phase {p}", _unit) for p in _PHASES)
for _kind in ("TotVArhImpQ1", "TotVArhImpQ2", "TotVArhExpQ3", "TotVArhExpQ4"):
    _METER_POINTS.append(_f(_kind, _kind, "varh"))
    _METER_POINTS.extend(_f(f"{_kind}ph{p}", f"{_kind} phase {p}", "varh") for p in _PHASES)
_METER_POINTS.append(Point("Evt", "bitfield32", 2, "Events"))

#: Model 213: three-phase meter, float (L 124).
METER = Model(213, "ac_meter", "Wye-Connect Three Phase (abcn) Meter", tuple(_METER_POINTS))

#: Model 113: three-phase inverter, float (L 60): the closest standard model for an EVSE's
#: measurements (SunSpec has no model for EV chargers).
INVERTER = Model(113, "inverter", "Inverter (Three Phase) FLOAT", (
    _f("A", "Amps", "A"), *(_f(f"Aph{p}", f"Amps Phase{p}", "A") for p in _PHASES),
    _f("PPVphAB", "Phase Voltage AB", "V"), _f("PPVphBC", "Phase Voltage BC", "V"),
    _f("PPVphCA", "Phase Voltage CA", "V"),
    *(_f(f"PhVph{p}", f"Phase Voltage {p}N", "V") for p in _PHASES),
    _f("W", "Watts", "W"), _f("Hz", "Hz", "Hz"), _f("VA", "VA", "VA"), _f("VAr", "VAr", "var"),
    _f("PF", "PF", "Pct"), _f("WH", "WattHours", "Wh"), _f("DCA", "DC Amps", "A"),
    _f("DCV", "DC Voltage", "V"), _f("DCW", "DC Watts", "W"),
    _f("TmpCab", "Cabinet Temperature", "C"),
    _f("TmpSnk", "Heat Sink Temperature", "C"), _f("TmpTrns", "Transformer Temperature", "C"),
    _f("TmpOt", "Other Temperature", "C"),
    Point("St", "enum16", 1, "Operating State"),
    Point("StVnd", "enum16", 1, "Vendor Operating State"),
    Point("Evt1", "bitfield32", 2, "Event1"), Point("Evt2", "bitfield32", 2, "Event Bitfield 2"),
    Point("EvtVnd1", "bitfield32", 2, "Vendor Event Bitfield 1"),
    Point("EvtVnd2", "bitfield32", 2, "Vendor Event Bitfield 2"),
    Point("EvtVnd3", "bitfield32", 2, "Vendor Event Bitfield 3"),
    Point("EvtVnd4", "bitfield32", 2, "Vendor Event Bitfield 4"),
))

#: An EVSE at unit id + 1: model 113 and, as the vendor has it, its state and number.
EVSE = Model(113, "inverter", INVERTER.label, INVERTER.points, extra=(
    Point("EvseState", "uint16", 1, "EVSE state", desc="1 waiting, 2 vehicle detected, "
          "3 charging, 4 charging with ventilation, 5 error, 6 offline (get_dev_info's state)"),
    Point("DevNo", "int16", 1, "Device number", desc="n of the EVSE En"),
))
#: A meter at unit id + 1: model 213 and, as the vendor has it, its role and number.
DEVICE_METER = Model(213, "ac_meter", METER.label, METER.points, extra=(
    Point("Role", "uint16", 1, "Meter role", desc="0 display .. 6 storage (all), as `role`"),
    Point("DevNo", "int16", 1, "Device number", desc="-n for the meter Mn"),
))

_MA = 2_000_000.0
LIMITS = Model(60000, "chargebrain_limits", "Charging manager limits", (
    _f("MaxTotCur", "Max. total current per phase", "mA", access="RW", minimum=0, maximum=_MA,
       desc="max_total_current (a formula reads as its value; a write replaces it)"),
    _f("ResCur", "Current reserve per phase", "mA", access="RW", minimum=0, maximum=_MA,
       desc="reserve_current"),
    _f("Overdraft", "Overdraft", "mA", access="RW", minimum=0, maximum=0,
       desc="overdraft_cur; only 0 may be written (a reset)"),
    _f("MaxEvseCur", "Max. total EVSE current per phase", "mA", access="RW", minimum=0,
       maximum=_MA, desc="max_total_evse_current, 0: none"),
    _f("MaxImb", "Max. phase imbalance", "mA", access="RW", minimum=0, maximum=_MA,
       desc="max_imbalance_cur"),
    _f("LbEna", "Load management active", access="RW", minimum=0, maximum=1,
       desc="lb_enabled: 1 load management, 0 observe"),
    _f("ImbAdd", "Imbalance includes consumers", access="RW", minimum=0, maximum=1,
       desc="imbalance_add"),
    _f("TotCurPct", "Share of max. total current", "Pct", access="RW", minimum=0,
       maximum=100, persisted=False, desc="max_total_cur_prc (not kept across restarts)"),
), desc="The site's limits, as get_params/set_params have them.")

FLAG_COUNT = 32
FLAGS = Model(60001, "chargebrain_flags", "Charging manager flags", tuple(
    Point(f"Flag{i}", "uint16", 1, f"Flag {i}", access="RW", minimum=0, maximum=1,
          persisted=False, desc=f"CM._flag{i}")
    for i in range(1, FLAG_COUNT + 1)
), desc="The CM variables _flag1.._flag32 (0 or 1; writes are not kept across restarts).")

VAR_NAME_REGS = 20
VARIABLES = Model(60002, "chargebrain_variables", "Charging manager variables", (),
                  repeat=(Point("Name", "string", VAR_NAME_REGS, "Name"),
                          _f("Val", "Value", access="RW", persisted=False,
                             desc="a write sets the variable to this number until restart")),
                  repeat_name="var",
                  desc="Every CM variable: its name and value, in the order they were made.")

CUSTOM_MODELS = (LIMITS, FLAGS, VARIABLES)


def json_definition(model: Model) -> dict[str, Any]:
    """The model's definition in SunSpec's JSON model format (for SunSpec's tools)."""

    def point(p: Point) -> dict[str, Any]:
        out: dict[str, Any] = {"name": p.name, "type": p.type, "size": p.size,
                               "label": p.label}
        if p.units:
            out["units"] = p.units
        if p.access == "RW":
            out["access"] = "RW"
        if p.desc:
            out["desc"] = p.desc
        return out

    group: dict[str, Any] = {
        "name": model.name, "type": "group", "label": model.label,
        "points": [
            {"name": "ID", "value": model.id, "type": "uint16", "size": 1,
             "label": "Model ID", "mandatory": "M", "static": "S"},
            {"name": "L", "type": "uint16", "size": 1, "label": "Model Length",
             "mandatory": "M", "static": "S"},
            *(point(p) for p in model.points),
        ],
    }
    if model.desc:
        group["desc"] = model.desc
    if model.repeat:
        group["groups"] = [{"name": model.repeat_name, "type": "group", "count": 0,
                            "points": [point(p) for p in model.repeat]}]
    return {"id": model.id, "group": group}
