"""What chargebrain publishes after a control cycle, and when a transaction ends.

After a cycle (at most once per cycle period) `StatePublisher.publish` builds the state
topics and hands those that changed to the outbox, retained:

* `<prefix>/get/dev_info`: the get_dev_info answer as a caller without the admin
  password sees it (no user ids);
* `<prefix>/get/params`: the get_params answer;
* `<prefix>/get/<dev_id>`: one device as in get_dev_info, for the devices with
  `mqtt_publish` on (every device while Home Assistant discovery is on); a device that
  is no longer published gets an empty retained message (which removes it);
* the Home Assistant discovery configs (`discovery.py`), when that is on.

"Changed" ignores the figures that move every second by themselves (`time`,
`cycle_time`, `com_err_secs`, `pause_time`), so a quiet site publishes nothing. A
transaction that ends is published once on `<prefix>/ta_log` (not retained), without
the user id and the RFID, which are credentials.

This module never waits for the broker: it only fills the outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chargebrain.api import views
from chargebrain.api.answers import json_bytes
from chargebrain.api.cmd_manager import params_answer
from chargebrain.manager.state import DeviceRuntime
from chargebrain.servers.mqtt.discovery import Discovery
from chargebrain.servers.mqtt.outbox import Outbox, Outgoing

if TYPE_CHECKING:
    from chargebrain.api.services import Services

#: Keys whose values move by themselves every second; a change of them alone is no change.
TICKING = frozenset({"time", "cycle_time", "com_err_secs", "pause_time"})


def _steady(doc: dict[str, Any]) -> bytes:
    """What counts of a device or of the parameters (their ticking keys are at the top)."""
    return json_bytes({k: v for k, v in doc.items() if k not in TICKING})


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatePublisher:
    """Builds the state topics and hands the changed ones to the outbox."""

    def __init__(self, app: Services, outbox: Outbox) -> None:
        self.app = app
        self.outbox = outbox
        self._sent: dict[str, bytes] = {}  # topic → the steady form last handed over
        self._objects: dict[str, object] = {}  # topic → the document last handed over
        self._groups: dict[str, set[str]] = {}  # "devices"/"discovery" → topics published
        self._discovery_cache: dict[str, tuple[object, str, dict[str, dict[str, Any]]]] = {}

    def reset(self) -> None:
        """Publish everything anew (after a reconnect: the broker may have lost it)."""
        self._sent.clear()
        self._objects.clear()

    def _viewer(self) -> views.Viewer:
        users = self.app.users

        def user_label(user_id: str) -> str:
            user = users.get(user_id)
            return user.name if user is not None and user.display else ""

        return views.Viewer(admin=False, user_label=user_label)

    def _put(self, topic: str, doc: Any, key: bytes | None = None) -> None:
        """Hand `doc` to the outbox unless it is the document last handed over for
        `topic`, or its steady form `key` (the whole document if None) is that one's."""
        if self._objects.get(topic) is doc and topic in self._sent:
            return  # (the same object: a cached discovery config)
        payload: bytes | None = None
        if key is None:
            payload = key = json_bytes(doc)
        self._objects[topic] = doc
        if self._sent.get(topic) == key:
            return
        self._sent[topic] = key
        if payload is None:
            payload = json_bytes(doc)
        self.outbox.put_state(Outgoing(topic, payload, retain=True))

    def _sync(self, group: str, docs: dict[str, tuple[Any, bytes | None]]) -> None:
        """Publish `docs` (topic → (document, steady form or None)); clear the group's
        topics no longer in it."""
        for topic, (doc, key) in docs.items():
            self._put(topic, doc, key)
        before = self._groups.get(group, set())
        for gone in before - docs.keys():
            self._sent.pop(gone, None)
            self._objects.pop(gone, None)
            self.outbox.put_state(Outgoing(gone, b"", retain=True))
        self._groups[group] = set(docs)

    def publish(self, prefix: str, discovery: Discovery | None) -> None:
        """Hand the state topics that changed to the outbox."""
        app = self.app
        mgr = app.manager
        clock = app.clock
        now = clock.now()
        info = views.dev_info_json(mgr, now, clock.monotonic(), self._viewer())
        # Each device's steady form is made once: for its own topic and for dev_info's.
        keys = [_steady(doc) for doc in info["devices"]]
        head = json_bytes({k: v for k, v in info.items() if k not in ("params", "devices")})
        self._put(f"{prefix}/get/dev_info", info,
                  b"\n".join([head, _steady(info["params"]), *keys]))
        answer = params_answer(mgr, now)
        self._put(f"{prefix}/get/params", answer, _steady(answer))
        every = discovery is not None
        devices: dict[str, tuple[Any, bytes | None]] = {}
        for doc, key in zip(info["devices"], keys, strict=True):
            rt = mgr.devices.get(doc["dev_id"])
            if rt is not None and (every or rt.settings.mqtt_publish):
                devices[f"{prefix}/get/{rt.dev_id}"] = (doc, key)
        self._sync("devices", devices)
        configs: dict[str, tuple[Any, bytes | None]] = {}
        if discovery is not None:
            site = discovery.site(mgr.site.title)
            configs.update((t, (c, None)) for t, c in site.items())
            for doc in info["devices"]:
                rt = mgr.devices.get(doc["dev_id"])
                if rt is not None:
                    found = self._discovery_of(discovery, rt, str(doc.get("model", "")))
                    configs.update((t, (c, None)) for t, c in found.items())
        self._sync("discovery", configs)
        for gone in [d for d in self._discovery_cache if d not in mgr.devices]:
            del self._discovery_cache[gone]

    def _discovery_of(self, discovery: Discovery, rt: DeviceRuntime,
                      model: str) -> dict[str, dict[str, Any]]:
        """A device's discovery configs, made again only when its settings, its model or
        whether it reports a state of charge changed."""
        marker = (rt.settings, model, rt.meter is not None and rt.meter.soc is not None,
                  discovery.prefix)
        cached = self._discovery_cache.get(rt.dev_id)
        if cached is not None and cached[0] == marker:
            return cached[2]
        configs = discovery.device(rt, model)
        self._discovery_cache[rt.dev_id] = (marker, model, configs)
        return configs

    def transaction(self, prefix: str, rt: DeviceRuntime, now: float) -> None:
        """Publish the transaction of `rt` that ends now (on unplug)."""
        ev = rt.evse
        if ev is None:
            return
        start = ev.plugged_at if ev.plugged_at is not None else now
        user = self._viewer().user_label(ev.user_id) if ev.user_id else ""
        doc = {
            "id": ev.transaction_id,
            "dev_id": rt.dev_id,
            "name": rt.config.name,
            "user_name": user,
            "start": _iso(start),
            "end": _iso(now),
            "duration_s": round(max(0.0, now - start)),
            "start_wh": round(ev.plug_energy_wh),
            "end_wh": round(ev.total_energy_wh),
            "energy_wh": round(ev.transaction_energy_wh),
            "max_power_w": round(ev.max_power_w),
            "charging_s": round(ev.charging_secs),
        }
        self.outbox.put_event(Outgoing(f"{prefix}/ta_log", json_bytes(doc), qos=1))
