"""Waiting in tests for a condition that has no event to wait on: poll it, with a deadline."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` (sync or async) until it holds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
