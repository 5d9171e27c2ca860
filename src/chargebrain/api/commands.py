"""The command table of `/cnf?cmd=…`: every command with its handler and permission.

Handler modules register themselves with `@command(name, Permission.X)`; the table is
the one place that says who may call what (see docs/api.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from multidict import MultiDict, MultiMapping

from chargebrain.api.errors import ApiError

if TYPE_CHECKING:
    from chargebrain.api.services import Services


class Permission(IntEnum):
    PUBLIC = 0  # anyone
    USER = 1  # a valid user id, PIN/RFID or the admin
    ADMIN = 2  # the admin password


@dataclass
class Caller:
    """Who sent a request."""

    is_admin: bool = False
    remote: str = ""
    # Set when the request carried credentials that did not match.
    bad_credentials: bool = False


@dataclass
class Request:
    app: Services
    method: str
    params: dict[str, str]  # the first value of each query and form parameter
    parsed_body: Any
    raw_body: bytes
    caller: Caller = field(default_factory=Caller)
    body_error: str | None = None  # why the body is not JSON, if it is not
    # Every query and form parameter with all its values, in the order sent (for the
    # commands that take a parameter more than once, as cmd=modbus with several writes).
    multi_params: MultiMapping[str] = field(default_factory=MultiDict)

    @property
    def body(self) -> Any:
        """The JSON body (None if there is none); a body that is not JSON is a 400."""
        if self.body_error is not None:
            raise ApiError(400, self.body_error)
        return self.parsed_body


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    permission: Permission
    summary: str


COMMANDS: dict[str, Command] = {}


def command(name: str, permission: Permission, summary: str = "") -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} registered twice")
        COMMANDS[name] = Command(name, handler, permission, summary or (handler.__doc__ or ""))
        return handler

    return register
