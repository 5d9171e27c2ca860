"""The application stops even when a background task swallows its cancellation (as
Python 3.11's asyncio.wait_for can when what it waits for completes at that moment)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chargebrain.app import App, Config
from tests.conftest import free_ports


async def test_a_task_that_goes_on_after_its_cancellation_is_cancelled_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = App(Config(tmp_path / "data", "127.0.0.1", free_ports(1), 0))
    await app.start()
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    app.spawn(stubborn, "stubborn")
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await app.stop()
    assert swallowed == 2
    assert "background task stubborn went on after it was cancelled" in caplog.text
