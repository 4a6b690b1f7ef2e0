"""Shared fixtures: one real redis-server per test session on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from watcher.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on a flushed database; closed after the test."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=False)
    await client.flushall()
    yield client
    await client.aclose()
