"""The set_cm_vars body, declared once: `{"vars": [{"name": …, "expr": …}, …]}`.

`CmVarShape` is one variable: its `name` and its value, a number or a formula, as `expr`
(or `val`, the query parameter's name). Numbers sent as text may be quoted or padded
(`"5"`, ` 5 `); a formula is kept as written, without surrounding spaces. The checks of a
definition are manager/cm_vars.define's; problems name the variable's place
(`vars[2]: …`). Keys other than these are ignored.

`definitions(body, clear)` reads a body, `definition(name, value)` the query form. The
formulas are compiled while the request's formulas are prepared (api/offload.py).
This module must never change the variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, PrivateAttr, model_validator

from chargebrain.api.errors import ApiError
from chargebrain.api.lenient import Body, Lenient, check, message, named
from chargebrain.api.params import Refused, clean
from chargebrain.manager.cm_vars import MAX_VARS, CmVar, CmVarError, define

_VALUE = {"type": ["number", "string"], "formula": True}


def _lenient(value: Any) -> Any:
    """Numbers as text are cleaned (`"5"`, ` 5 `); formulas are kept as written, stripped."""
    if not isinstance(value, str):
        return value
    text = clean(value)
    try:
        float(text)
    except ValueError:
        return value.strip()
    return text


def _as_sent(value: Any) -> Any:
    return value


class CmVarShape(Body):
    """One Charging Manager variable (docs/formulas.md)."""

    not_object: ClassVar[str] = 'an object {"name": ..., "expr": ...} is required'

    name: Annotated[Any, Lenient(_as_sent, type="string", pattern="^[A-Za-z][A-Za-z0-9_]*$")]
    """The variable's name: letters, digits and `_`, starting with a letter (or one of the
    predefined names that may be set, such as `_set_price`)."""
    expr: Annotated[Any, Lenient(_as_sent, **_VALUE)] = None
    """A number, or a formula evaluated every cycle."""
    val: Annotated[Any, Lenient(_as_sent, **_VALUE)] = None
    """The same as `expr` (the query parameter's name); `expr` counts when both are sent."""

    _definition: CmVar | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _has_name(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise message(cls.not_object)
        if "name" not in data:
            raise message("name is required")
        return data

    @model_validator(mode="after")
    def _define(self) -> CmVarShape:
        value = self.expr if "expr" in self.model_fields_set else self.val
        try:
            self._definition = define(self.name, _lenient(value))
        except CmVarError as exc:
            raise message(str(exc)) from None
        return self

    @property
    def definition(self) -> CmVar:
        assert self._definition is not None
        return self._definition


def _var_list(value: Any) -> Any:
    if value is not None and not isinstance(value, list):
        raise named("", ' must be a list of {"name": ..., "expr": ...}')
    if value is not None and len(value) > MAX_VARS:
        raise Refused(f"no more than {MAX_VARS} variables")
    return value


class CmVarsBody(Body):
    """A set_cm_vars body."""

    not_object: ClassVar[str] = 'a JSON object {"vars": [...]} is required in the request body'

    vars: Annotated[tuple[CmVarShape, ...] | None, BeforeValidator(_var_list)] = None
    """The variables to set (with `clear=1`, it may be missing: only clear)."""


def definitions(body: Any, clear: bool) -> list[CmVar]:
    """The definitions of a set_cm_vars body, or ApiError 400."""
    shape = check(CmVarsBody, body)
    if shape.vars is None:
        if clear:
            return []
        raise ApiError(400, 'vars is required: a list of {"name": ..., "expr": ...}')
    return [item.definition for item in shape.vars]


def definition(name: Any, value: Any) -> CmVar:
    """The definition of the query form (`name=…&val=…`), or ApiError 400."""
    return check(CmVarShape, {"name": name, "expr": value}).definition
