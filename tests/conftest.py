"""Shared fixtures: one real redis-server per test session on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from state.store.client import open_client
from tests.helpers.config import write_config
from watcher.demo.redis_cluster import RedisClusterServers
from watcher.demo.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on loopback, shared by the session's cluster tests."""
    cluster = RedisClusterServers(masters=3)
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on a flushed database; closed after the test."""
    client = open_client(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def sync_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A blocking client on a flushed database, for tests that call the CLI in-process."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Path:
    """A config file pointing at the test redis-server."""
    return write_config(tmp_path, redis_server.url)
