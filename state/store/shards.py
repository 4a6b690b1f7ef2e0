"""What the workers sharing the shards keep in Redis: the shard count, the worker registry.

The shard count S is recorded once (``<prefix>:shards``); the data is laid
out for it, so a worker configured with another S is refused. Workers
register in ``<prefix>:workers`` with a TTL on Redis's clock; the live ones
are counted to share the shards out. The shards themselves are held through
their input leases (``<prefix>:{k}:in:lease``, see :class:`Store`).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from state.errors import StoreError
from state.keys import Keys
from state.store.scripts import Script


class ShardCountMismatch(StoreError):
    """Redis holds data laid out for another shard count."""


class ShardStore:
    """The shard count, the registry of workers and who holds each shard."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, count: int) -> None:
        self.redis = redis
        self.keys = keys
        self.count = count
        self.shard_keys = [keys.of_shard(k) for k in range(count)]
        self._register = Script(redis, "register_worker")

    async def record_count(self) -> None:
        """Record S if Redis holds none; refuse if it holds another."""
        await self.redis.set(self.keys.shard_count, self.count, nx=True)
        recorded = await self.redis.get(self.keys.shard_count)
        if recorded is None:
            # Deleted between the two calls: Redis was flushed; say so rather than guess.
            raise StoreError(f"{self.keys.shard_count} vanished while being recorded")
        if int(recorded) != self.count:
            raise ShardCountMismatch(
                f"Redis holds data laid out for {int(recorded)} shards ({self.keys.shard_count});"
                f" this worker is configured with shards.count = {self.count}. Accounts are"
                f" placed by their shard, so another count would lose them: set"
                f" shards.count = {int(recorded)}, or move the data to the new count first"
                f' (README, "Changing the shard count").'
            )

    async def register(self, worker: str, ttl_ms: int) -> list[str]:
        """Register ``worker`` for ``ttl_ms``; return every live worker (itself included)."""
        reply = await self._register.one([self.keys.workers], [worker, ttl_ms])
        return [w.decode() if isinstance(w, bytes) else str(w) for w in reply]

    async def deregister(self, worker: str) -> None:
        """Leave the registry at a clean stop, so the others take its share at once."""
        await self.redis.zrem(self.keys.workers, worker)

    async def owners(self) -> list[str | None]:
        """The worker holding each shard's lease, by shard (None: free)."""
        pipe = self.redis.pipeline(transaction=False)
        for keys in self.shard_keys:
            pipe.get(keys.input_lease)
        return [None if v is None else v.decode() for v in await pipe.execute()]

    async def workers(self) -> list[tuple[str, float]]:
        """Every registered worker with its registration's expiry (ms), live or not."""
        reply: Any = await self.redis.zrange(self.keys.workers, 0, -1, withscores=True)
        return [(w.decode(), score) for w, score in reply]
