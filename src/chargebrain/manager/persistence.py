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

    def get_setting(self, key: str, default: Any = None) -> Any:
        return self.store.get_setting(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self.store.set_setting(key, value)

    def save_overdraft(self, value: int) -> None:
        self.store.set_setting(OVERDRAFT_KEY, value)

    def load_overdraft(self) -> int:
        return int(self.store.get_setting(OVERDRAFT_KEY, 0) or 0)

    def save_device(self, cfg: DeviceConfig) -> None:
        """Store a device's settings. A new device goes after every stored one; a stored
        one keeps its place (so the order survives deletions and restarts)."""
        doc = _stored_doc(cfg)
        self.store.execute(
            "INSERT INTO devices (dev_id, position, config) VALUES "
            "(?, (SELECT COALESCE(MAX(position), -1) + 1 FROM devices), ?) "
            "ON CONFLICT(dev_id) DO UPDATE SET config = excluded.config",
            (cfg.dev_id, json.dumps(doc)),
        )

    def delete_device(self, dev_id: str) -> None:
        self.store.execute("DELETE FROM devices WHERE dev_id = ?", (dev_id,))

    def load_devices(self) -> list[tuple[DeviceConfig, str]]:
        """Every stored device in its position, with why its row cannot be read ("" if it
        can; then the settings are a bare stand-in for the row, which stays as it is)."""
        out = []
        for dev_id, text in self.store.query(
                "SELECT dev_id, config FROM devices ORDER BY position, dev_id"):
            doc: Any = None
            try:
                doc = json.loads(text)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                out.append((views.device_from_stored(doc), ""))
            except (ValueError, TypeError) as exc:
                dev_type = doc.get("dev_type") if isinstance(doc, dict) else None
                stand_in = DeviceConfig(str(dev_id), str(dev_type or "unknown"), name=str(dev_id))
                out.append((stand_in, f"stored settings unreadable: {exc}"))
        return out

    def stored_ids(self) -> list[str]:
        return [str(row[0]) for row in self.store.query("SELECT dev_id FROM devices")]


def _stored_doc(cfg: DeviceConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in cfg.__dict__.items():
        doc[key] = list(value) if isinstance(value, tuple) else value
    return doc
