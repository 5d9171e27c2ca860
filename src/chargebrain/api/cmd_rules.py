"""check_rules: the problems of a rule list or rule set, before it is saved.

A form checks what is typed as it is typed (the web UI's rule editor), with the very
validation set_device and set_user apply (core/rules/validate.py), device ids of this
site included. Public: it reads no configuration but which device ids exist, which
get_dev_info shows anyone. The formulas are compiled in the worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chargebrain.api.commands import Permission, Request, command
from chargebrain.api.errors import ApiError
from chargebrain.core.rules import validate_rules


@command("check_rules", Permission.PUBLIC,
         "Check charging rules (POST body: a rule list or crule_set); the problems found")
async def check_rules(req: Request) -> Any:
    body = req.body
    if not isinstance(body, list | Mapping):
        raise ApiError(400, "a JSON rule list or rule set is required in the request body")
    known = list(req.app.manager.devices)
    errors = await req.app.worker.run(validate_rules, body, known)
    return {"ok": not errors, "errors": errors}
