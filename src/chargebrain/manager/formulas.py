"""The compiled formulas of the configuration, by where they stand.

Keys are `site.<parameter>` (max_total_current, max_total_evse_current, surplus_expr) and
`<dev_id>.<field>` (max_charging_cur, expr). Formulas are compiled when a setting is
accepted, never in a cycle; the table also knows which devices any of them reads (their
pushed readings wake a cycle when they move).
"""

from __future__ import annotations

from chargebrain.core.formula import Formula


class FormulaTable:
    """Compiled formulas by key, and the ids of the devices they read."""

    def __init__(self) -> None:
        self._by_key: dict[str, Formula] = {}
        self.device_ids: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def get(self, key: str) -> Formula | None:
        return self._by_key.get(key)

    def set(self, key: str, formula: Formula) -> None:
        self._by_key[key] = formula
        self._refresh()

    def forget(self, key: str) -> None:
        if self._by_key.pop(key, None) is not None:
            self._refresh()

    def forget_device(self, dev_id: str) -> None:
        """Drop every formula of one device."""
        prefix = dev_id + "."
        for key in [k for k in self._by_key if k.startswith(prefix)]:
            del self._by_key[key]
        self._refresh()

    def _refresh(self) -> None:
        self.device_ids = frozenset(d for f in self._by_key.values() for d in f.device_ids)
