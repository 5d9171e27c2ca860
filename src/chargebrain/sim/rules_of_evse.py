"""A scenario EVSE's charging rules as an installer would set them in the manager: the
vendor's rule its `mode` (surplus, solar) makes, with its `undercut`, then its further
`rules`."""

from __future__ import annotations

import json
from typing import Any

from chargebrain.core.rules import MODE_SOLAR, MODE_SURPLUS
from chargebrain.sim.scenario import ChargeMode, EvseSpec

#: The vendor's rule modes of the scenario's EVSE modes.
RULE_MODES = {ChargeMode.SURPLUS: MODE_SURPLUS, ChargeMode.SOLAR: MODE_SOLAR}


def charging_rules(e: EvseSpec) -> dict[str, Any]:
    """The EVSE's charging rules as an installer sets them: the rule its `mode` makes,
    then its further `rules` (a rule-set object replaces the list)."""
    rules: list[dict[str, Any]] = []
    mode = RULE_MODES.get(ChargeMode(e.mode))
    if mode is not None:
        rule: dict[str, Any] = {"mode": mode, "enabled": True}
        if e.undercut_s is not None:
            rule["udur"] = e.undercut_s
        rules.append(rule)
    extra = json.loads(e.rules_json) if e.rules_json else None
    if isinstance(extra, dict):
        return {"crule_set": extra}
    if isinstance(extra, list):
        rules += extra
    return {"charging_rules": tuple(rules)} if rules else {}
