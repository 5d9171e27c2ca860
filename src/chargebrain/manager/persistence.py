"""Keeps the charging manager's configuration in the SQLite store.

Device and site settings are stored as the documents api/views.py produces, so what
is saved is exactly what get_devices shows.
"""

from __future__ import annotations

import json
from typing import Any

from chargebrain.api import views
from chargebrain.manager.config import DeviceConfig, SiteParams
from chargebrain.store.db import Store

SITE_KEY = "site_params"
OVERDRAFT_KEY = "overdraft_cur"


class ManagerStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def save_site(self, params: SiteParams) -> None:
        self.store.set_setting(SITE_KEY, views.site_persisted(params))

    def load_site(self) -> SiteParams:
        stored = self.store.get_setting(SITE_KEY)
        return views.site_from_stored(stored) if isinstance(stored, dict) else SiteParams()

    def save_overdraft(self, value: int) -> None:
        self.store.set_setting(OVERDRAFT_KEY, value)

    def load_overdraft(self) -> int:
        return int(self.store.get_setting(OVERDRAFT_KEY, 0) or 0)

    def save_device(self, cfg: DeviceConfig, position: int) -> None:
        doc = _stored_doc(cfg)
        self.store.execute(
            "INSERT INTO devices (dev_id, position, config) VALUES (?, ?, ?) "
            "ON CONFLICT(dev_id) DO UPDATE SET position = excluded.position, "
            "config = excluded.config",
            (cfg.dev_id, position, json.dumps(doc)),
        )

    def delete_device(self, dev_id: str) -> None:
        self.store.execute("DELETE FROM devices WHERE dev_id = ?", (dev_id,))

    def load_devices(self) -> list[DeviceConfig]:
        rows = self.store.query("SELECT config FROM devices ORDER BY position, dev_id")
        return [views.device_from_stored(json.loads(row[0])) for row in rows]


def _stored_doc(cfg: DeviceConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in cfg.__dict__.items():
        doc[key] = list(value) if isinstance(value, tuple) else value
    return doc
