"""Exceptions raised by device drivers when a device cannot be read or commanded.

Drivers turn every transport problem (timeout, refused connection, protocol error, an answer
that does not fit the device description) into one of these, with a message that names the
device and what failed. This module must never import a transport library.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device did not answer, or answered something unusable."""


class ModbusIOError(DeviceError):
    """A Modbus request failed: no connection, no answer in time, or an exception response.

    `exception_code` is the Modbus exception code when the device answered with one
    (2 = illegal data address, ...), otherwise None.
    """

    def __init__(self, message: str, exception_code: int | None = None) -> None:
        super().__init__(message)
        self.exception_code = exception_code
