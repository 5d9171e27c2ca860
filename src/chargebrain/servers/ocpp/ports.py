"""What a charge point's session needs from the rest of chargebrain, as protocols.

The session (session.py) depends on these narrow interfaces, never on the classes that
implement them (the manager's reported transactions, the SQLite store, the central
system), so that it imports neither the manager nor the server that holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chargebrain.clock import Clock
from chargebrain.devices.ocpp import OcppHub
from chargebrain.servers.ocpp.messages import Boot


class Transactions(Protocol):
    """Cards and transactions (manager.reported.ReportedTransactions)."""

    def authorize(self, dev_ids: Sequence[str], id_tag: str) -> str:
        """"Accepted", "Blocked" or "Invalid" for a card at any of these EVSEs."""

    def start(self, dev_id: str, id_tag: str, start_wh: float, when: float
              ) -> tuple[int, str]:
        """A transaction the EVSE began: its id and the card's status."""

    def stop(self, dev_ids: Sequence[str], tid: int, end_wh: float, when: float) -> None:
        """The EVSE ended `tid`; raises LookupError if it is none of theirs."""

    def issued(self, dev_ids: Sequence[str], tid: int) -> bool:
        """Whether `tid` is a transaction of one of these EVSEs."""


class BootBook(Protocol):
    """What each charge point said about itself when it last booted (kept across
    restarts: a charge point that reconnects does not boot again)."""

    def get(self, charge_box_id: str) -> Boot | None: ...
    def put(self, charge_box_id: str, boot: Boot) -> None: ...


class Central(Protocol):
    """The central system, as each of its sessions sees it."""

    @property
    def hub(self) -> OcppHub: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def transactions(self) -> Transactions: ...
    @property
    def boots(self) -> BootBook: ...

    def seen(self, charge_box_id: str, remote: str, connected: bool,
             boot: Boot | None = None, connector: int | None = None,
             status: str | None = None) -> None:
        """Note what a charge point that is not configured did (for the admin's list)."""
