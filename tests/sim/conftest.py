"""Fixtures of the simulator tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_manager() -> Iterator[None]:
    """The charging manager logs every pause and stale device: only errors while a
    scenario runs with it."""
    logger = logging.getLogger("chargebrain")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
