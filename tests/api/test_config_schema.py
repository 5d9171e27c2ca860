"""get_config_schema: the settings' JSON Schema for the web UI's forms, over HTTP.

It is public and holds no configuration: the same answer with or without the admin
password, before and after the installation has users and devices. Every property is a
setting the commands take (and the object it describes round-trips), none is a read-only
key, and each says its type, meaning, default, range and form hints.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from chargebrain.api import known_keys
from tests.api.test_users import ADMIN, add_user, call, set_password
from tests.conftest import Running

READ_ONLY = {"com_err", "power_w", "state", "version", "vsn", "time", "cycle_time",
             "max_total_power", "overdraft_cur", "dev_id", "dev_type", "is_evse"}


def forms(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"site": schema["site"], **{f"device.{k}": v for k, v in schema["device"].items()},
            "user": schema["user"], "card": schema["user"]["properties"]["rfids"]["items"]}


async def test_the_schema_is_public_and_the_same_for_everyone(
        running: Running, http: aiohttp.ClientSession) -> None:
    status, before = await call(http, running, "cmd=get_config_schema")
    assert status == 200
    assert set(before) == {"site", "device", "user"}
    assert set(before["device"]) == {"evse", "meter", "group"}
    uid = await add_user(http, running, "walker", ["4711"], ["E1"])
    status, _ = await call(http, running, "cmd=set_device", {"devices": [
        {"dev_type": "meter_ajax", "dev_id": "M3", "name": "secret grid meter"}]})
    assert status == 200
    await set_password(http, running)
    for headers in (None, ADMIN):
        status, answer = await call(http, running, "cmd=get_config_schema", headers=headers)
        assert status == 200 and answer == before
    text = str(before)
    assert uid not in text and "4711" not in text and "secret grid meter" not in text


async def test_every_property_is_a_setting_with_its_hints(
        running: Running, http: aiohttp.ClientSession) -> None:
    _, schema = await call(http, running, "cmd=get_config_schema")
    _, params = await call(http, running, "cmd=get_params")
    site_keys = known_keys.site_keys(params)
    for name, form in forms(schema).items():
        assert form["type"] == "object" and form["properties"], name
        for key, prop in form["properties"].items():
            assert key not in READ_ONLY or name in ("user", "card"), (name, key)
            assert isinstance(prop["advanced"], bool), (name, key)
            assert prop["description"] and "\n" not in prop["description"], (name, key)
            assert "type" in prop and "title" not in prop, (name, key)
            if name == "site":
                assert key in site_keys, key
            elif name.startswith("device."):
                assert key in known_keys.device_keys(name.removeprefix("device.")), key
    site = schema["site"]["properties"]
    assert site["max_total_current"] == {
        "advanced": False, "default": 32000, "description": site["max_total_current"][
            "description"], "formula": True, "maxLength": 4096, "maximum": 2_000_000,
        "minimum": 0, "type": ["integer", "string"], "unit": "mA"}
    assert site["cycle_ms"]["advanced"] is True and site["cycle_ms"]["unit"] == "ms"
    evse = schema["device"]["evse"]["properties"]
    assert evse["phase_rotation"]["enum"] == [0, 120, 240]
    assert evse["min_charging_cur"]["default"] == 6000
    assert "default" not in evse["name"]  # a new device is named after its id
    assert {"role", "expr"} <= set(schema["device"]["meter"]["properties"])
    assert "role" not in evse and "prio" not in schema["device"]["meter"]["properties"]
    card = forms(schema)["card"]
    assert card["required"] == ["id"] and card["properties"]["used_phases"]["maximum"] == 7


async def test_defaults_are_what_a_new_device_gets(
        running: Running, http: aiohttp.ClientSession) -> None:
    _, schema = await call(http, running, "cmd=get_config_schema")
    for kind, dev_type, dev_id in (("evse", "evse_ajax", "E2"), ("meter", "meter_ajax", "M3"),
                                   ("group", "evse_group", "E5")):
        status, stored = await call(http, running, "cmd=set_device",
                                    {"devices": [{"dev_type": dev_type, "dev_id": dev_id}]})
        assert status == 200, stored
        for key, prop in schema["device"][kind]["properties"].items():
            if prop.get("writeOnly"):  # a secret: only whether it is set is shown
                assert stored[f"{key}_set"] is bool(prop["default"]), (kind, key)
            elif "default" in prop:
                assert stored[key] == prop["default"], (kind, key)
