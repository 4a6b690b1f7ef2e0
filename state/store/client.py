"""Open a redis-py asyncio client the way every part of liqwatch needs it.

No socket timeout in the client: redis-py implements it with
``asyncio.wait_for``, which on Python 3.11 swallows a task's cancellation
when the send completes in the same loop iteration (CPython gh-86296; measured
here: 2 of 3 cancellations of a task looping on SET were lost). A lost
cancellation leaves a task running after its TaskGroup gave up on it, so a
clean stop or a crash can hang. Callers bound their waits with
``asyncio.timeout`` instead, which propagates cancellation correctly.

No retries in the client either: the daemon's link (watcher/daemon/link.py)
decides what is retried, how often and with what backoff, and a one-shot
command reports a failure rather than resending what may have been applied.

A Redis Cluster gets redis-py's cluster client with the same rules: it
follows MOVED and ASK redirections itself (the command was not run where it
was refused, so following is always safe) and, after a connection error,
re-reads the slot map on the next call; a failed call is the link's to retry.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry


def open_client(
    url: str, *, cluster: bool = False, connect_timeout: float = 5.0, **options: Any
) -> aioredis.Redis:
    """Return a client for ``url``: a connect timeout, no socket timeout (unless given), no retries.

    ``cluster``: ``url`` names one node of a Redis Cluster; the client finds
    the others and routes each command to the node holding its slot.
    """
    options.setdefault("retry", Retry(NoBackoff(), 0))
    options.setdefault("socket_timeout", None)
    if cluster:
        client = RedisCluster.from_url(url, socket_connect_timeout=connect_timeout, **options)
        # The two clients share their command interface; the store uses only that.
        return client  # type: ignore[return-value]
    return aioredis.Redis.from_url(url, socket_connect_timeout=connect_timeout, **options)


async def drop_idle(client: aioredis.Redis) -> None:
    """Close the connections nobody is using (after an outage: they may be dead)."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            await node.disconnect_free_connections()
        return
    await client.connection_pool.disconnect(inuse_connections=False)


def is_cluster(client: aioredis.Redis) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)
