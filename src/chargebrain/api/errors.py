"""The one exception type the API answers with: a status code and a clear message."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Answered as JSON with a 4xx status; raised before anything is changed."""

    def __init__(self, status: int, message: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # The exact JSON body to send, where the documentation fixes it.
        self.body = body if body is not None else {"error": message}
        self.headers = headers  # sent with the answer (e.g. Retry-After of a 429)
