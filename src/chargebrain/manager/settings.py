"""The site parameters in force: checked, their formulas compiled, persisted.

`set` compiles the parameters that may be formulas (max_total_current,
max_total_evse_current, surplus_expr) before anything changes, so a refused change
alters nothing; the minimum pause time is handed to every device (get_dev_info shows it
per EVSE). Persisted unless asked not to (`max_total_cur_prc` and temporary changes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chargebrain.core.formula import Formula, FormulaError, compile_formula
from chargebrain.manager.config import ConfigError, SiteParams
from chargebrain.manager.formulas import FormulaTable
from chargebrain.manager.inventory import DeviceInventory
from chargebrain.manager.ports import SiteStore

log = logging.getLogger("chargebrain.manager")

#: Site parameters that may be formulas (their compiled form is `site.<name>`).
FORMULA_PARAMS = ("max_total_current", "max_total_evse_current", "surplus_expr")


class SiteSettings:
    """The site parameters (`params`) and how they change."""

    def __init__(self, params: SiteParams, formulas: FormulaTable, store: SiteStore,
                 inventory: DeviceInventory, wake: Callable[[], None]) -> None:
        self.formulas = formulas
        self.store = store
        self.inventory = inventory
        self._wake = wake
        self.params = params
        # The stored parameters, as they are: a formula that no longer compiles is kept
        # and counts as missing (a limit of 0, no surplus formula) until it is set anew.
        self._put(params, _compiled(params, strict=False), persist=False)

    def set(self, params: SiteParams, persist: bool = True) -> None:
        """Put `params` in force (ConfigError and no change if a formula is bad)."""
        self._put(params, _compiled(params, strict=True), persist)

    def _put(self, params: SiteParams, compiled: dict[str, Formula | None],
             persist: bool) -> None:
        for name, formula in compiled.items():
            if formula is None:
                self.formulas.forget(f"site.{name}")
            else:
                self.formulas.set(f"site.{name}", formula)
        self.params = params
        self.inventory.min_pause_time = params.min_pause_time
        for rt in self.inventory.devices.values():
            rt.manager_min_pause = params.min_pause_time
        if persist:
            self.store.save_site(params)
        self._wake()


def _compiled(params: SiteParams, strict: bool) -> dict[str, Formula | None]:
    """The compiled formula of each formula parameter (None: a number or empty). A bad
    formula raises ConfigError if `strict`, else is logged and left out."""
    out: dict[str, Formula | None] = {}
    for name in FORMULA_PARAMS:
        value = getattr(params, name)
        out[name] = None
        if isinstance(value, str) and value.strip():
            try:
                out[name] = compile_formula(value)
            except FormulaError as exc:
                if strict:
                    raise ConfigError(f"{name}: {exc}") from None
                log.error("site parameter %s cannot be used as stored: %s", name, exc)
    return out
