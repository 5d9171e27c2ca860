"""OCPP 1.6 payloads of a charge point's side as plain values: what the gateway (and the
simulated wallbox) sends to a backend, and reads in the backend's calls.

Pure functions: no I/O, no clock (times are passed in). The payloads are checked against
the schemas when they leave (adapter.py); strings are cut to the lengths OCPP allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chargebrain.servers.ocpp.adapter import Payload
from chargebrain.servers.ocpp.messages import iso

PHASES = ("L1", "L2", "L3")
#: The measurands a charge point of chargebrain samples, in this order.
MEASURANDS = ("Current.Import", "Power.Active.Import", "Energy.Active.Import.Register")


def boot(vendor: str, model: str, serial: str, firmware: str) -> Payload:
    out: Payload = {"chargePointVendor": vendor[:20] or "chargebrain",
                    "chargePointModel": model[:20] or "EVSE"}
    if serial:
        out["chargePointSerialNumber"] = serial[:25]
    if firmware:
        out["firmwareVersion"] = firmware[:50]
    return out


def status(connector: int, status: str, at: float, error_code: str = "NoError",
           info: str = "") -> Payload:
    out: Payload = {"connectorId": connector, "errorCode": error_code, "status": status,
                    "timestamp": iso(at)}
    if info:
        out["info"] = info[:50]
    return out


def sampled(currents_a: Sequence[float], power_w: float | None, energy_wh: float | None,
            measurands: Sequence[str] = MEASURANDS, context: str = "Sample.Periodic"
            ) -> list[dict[str, object]]:
    """The sampled values of one moment: a current per phase (A), the power (W) and the
    energy register (Wh), as far as `measurands` asks for them."""
    out: list[dict[str, object]] = []
    base = {"context": context, "location": "Outlet"}
    if "Current.Import" in measurands:
        for phase, amps in zip(PHASES, currents_a, strict=False):
            out.append({"value": f"{max(0.0, amps):.1f}", "measurand": "Current.Import",
                        "phase": phase, "unit": "A", **base})
    if power_w is not None and "Power.Active.Import" in measurands:
        out.append({"value": f"{max(0.0, power_w):.0f}", "measurand": "Power.Active.Import",
                    "unit": "W", **base})
    if energy_wh is not None and "Energy.Active.Import.Register" in measurands:
        out.append({"value": f"{max(0.0, energy_wh):.0f}",
                    "measurand": "Energy.Active.Import.Register", "unit": "Wh", **base})
    return out


def meter_values(connector: int, at: float, values: list[dict[str, object]],
                 transaction_id: int | None = None) -> Payload:
    out: Payload = {"connectorId": connector,
                    "meterValue": [{"timestamp": iso(at), "sampledValue": values}]}
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    return out


def start_transaction(connector: int, id_tag: str, meter_start_wh: float, at: float) -> Payload:
    return {"connectorId": connector, "idTag": id_tag[:20], "meterStart": round(meter_start_wh),
            "timestamp": iso(at)}


def stop_transaction(transaction_id: int, meter_stop_wh: float, at: float, reason: str,
                     id_tag: str = "") -> Payload:
    out: Payload = {"transactionId": transaction_id, "meterStop": round(meter_stop_wh),
                    "timestamp": iso(at), "reason": reason}
    if id_tag:
        out["idTag"] = id_tag[:20]
    return out


def configuration(known: Mapping[str, tuple[str, bool]], asked: object) -> Payload:
    """A GetConfiguration answer: `known` maps a key to (value, read-only)."""
    keys = [k for k in asked if isinstance(k, str)] if isinstance(asked, list) and asked \
        else list(known)
    found = [{"key": k, "readonly": known[k][1], "value": known[k][0][:500]}
             for k in keys if k in known]
    out: Payload = {"configurationKey": found}
    unknown = [k[:50] for k in keys if k not in known]
    if unknown:
        out["unknownKey"] = unknown
    return out


def text(p: Mapping[str, object], key: str) -> str:
    value = p.get(key)
    return value if isinstance(value, str) else ""


def integer(p: Mapping[str, object], key: str) -> int | None:
    value = p.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
