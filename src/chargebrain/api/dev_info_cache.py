"""The get_dev_info answer as bytes, encoded once while nothing it shows changes.

The answer (api/views.py `dev_info_json`) is large (about 0.75 kB a device) and most of
its cost is building and encoding it. Between two changes of the manager's state
(`ChargingManager.shown_version`: a cycle, a change that wakes the loop, one that calls
`signal.changed()`) only the clock moves it: `params.time` and each device's
`com_err_secs`. So the encoded answer is kept split at those numbers, and each request
only writes them in and joins the pieces. There are two forms, one for the admin (who
sees the user ids) and one for everyone else. The bytes are those `json_bytes` gives
for `dev_info_json` at the same moment.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chargebrain.api import views
from chargebrain.api.answers import json_bytes

if TYPE_CHECKING:
    from chargebrain.manager.runtime import ChargingManager

# Put in place of the clock's numbers before encoding (`time` first, then each device's
# `com_err_secs` in order); control characters come out of the encoder as \u escapes.
_MARK = "\x00cb"
_ENCODED_MARK = b'"\\u0000cb"'
_MARGIN = 1e-6  # s: a joined answer is made again this much before a tick, to be safe


@dataclass
class _Form:
    """One encoded answer: the pieces around the clock's numbers (`None` in their places),
    the distinct monotonic times of the devices' last change of communication state, and
    for each device which of them is its own; the last answer joined and until when it
    holds (the wall clock's whole second, the monotonic time of the next tick)."""

    version: tuple[object, ...]
    template: list[bytes | None]
    since: list[float]
    which: list[int]
    joined: bytes = b""
    second: int = -1
    until: float = float("-inf")

    def join(self, now: float, mono_now: float) -> bytes:
        second = int(now)
        if second == self.second and mono_now < self.until:
            return self.joined
        ticks = []
        until = float("inf")
        for since in self.since:
            elapsed = mono_now - since
            # int() cuts toward zero and negative values show as 0: the next change is
            # at the next whole second of `elapsed`, or at 1 s.
            whole = int(elapsed) if elapsed >= 0 else 0
            ticks.append(b"%d" % whole)
            until = min(until, since + whole + 1 - _MARGIN)
        out = self.template.copy()
        out[1] = b"%d" % second
        out[3::2] = [ticks[i] for i in self.which]
        self.joined = b"".join(out)  # type: ignore[arg-type]
        self.second, self.until = second, until
        return self.joined


@dataclass
class DevInfoCache:
    """The encoded answers of one manager, for the admin (True) and everyone else."""

    forms: dict[bool, _Form] = field(default_factory=dict)

    def answer(self, mgr: ChargingManager, now: float, mono_now: float,
               viewer: views.Viewer) -> bytes:
        """`json_bytes(dev_info_json(mgr, now, mono_now, viewer))`."""
        version = mgr.shown_version()
        form = self.forms.get(viewer.admin)
        if version is None:
            self.forms.clear()
            return json_bytes(views.dev_info_json(mgr, now, mono_now, viewer))
        if form is None or form.version != version:
            made = _encode(mgr, version, viewer)
            if made is None:  # a marker among the values: not split, not kept
                self.forms.pop(viewer.admin, None)
                return json_bytes(views.dev_info_json(mgr, now, mono_now, viewer))
            self.forms[viewer.admin] = form = made
        return form.join(now, mono_now)


def _encode(mgr: ChargingManager, version: tuple[object, ...],
            viewer: views.Viewer) -> _Form | None:
    since = [rt.status.com_state_since for rt in mgr.inventory.devices_in_order()]
    info = views.dev_info_json(mgr, 0.0, 0.0, viewer)
    info["params"]["time"] = _MARK
    for dev in info["devices"]:
        dev["com_err_secs"] = _MARK
    split = json_bytes(info).split(_ENCODED_MARK)
    if len(split) != len(since) + 2:
        return None
    template: list[bytes | None] = [None] * (2 * len(split) - 1)
    template[0::2] = split
    distinct = sorted(set(since))
    where = {s: i for i, s in enumerate(distinct)}
    return _Form(version, template, distinct, [where[s] for s in since])


_CACHES: weakref.WeakKeyDictionary[ChargingManager, DevInfoCache] = (
    weakref.WeakKeyDictionary())


def dev_info_bytes(mgr: ChargingManager, now: float, mono_now: float,
                   viewer: views.Viewer) -> bytes:
    """The get_dev_info answer of `mgr` as `viewer` sees it, encoded."""
    cache = _CACHES.get(mgr)
    if cache is None:
        _CACHES[mgr] = cache = DevInfoCache()
    return cache.answer(mgr, now, mono_now, viewer)
