"""Fixtures of the notifier's tests: local HTTP sinks, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.helpers.sinks import SinkServer


@pytest.fixture
async def sink() -> AsyncIterator[Callable[..., Awaitable[SinkServer]]]:
    """Start a SinkServer with the given options; every one is closed after the test."""
    started: list[SinkServer] = []

    async def make(**options: Any) -> SinkServer:
        server = await SinkServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()
