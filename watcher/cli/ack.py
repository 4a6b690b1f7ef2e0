"""``liqwatch ack-data-loss``: after Redis lost its data and the book is reloaded, resume.

Run it once the book is back in Redis (``liqwatch load`` of the full state,
applied by the daemon): every daemon holding its decisions adopts the
acknowledged generation on its next heartbeat and reconciles as at a start.
"""

from __future__ import annotations

import argparse

import redis.asyncio as aioredis

from state.store.generation import Generation, GenerationStore
from watcher.cli.context import settings_from, with_redis
from watcher.clock import wall_ms


def ack_text(before: Generation | None, after: Generation) -> str:
    """Describe what was acknowledged."""
    if before is None:
        return f"no generation marker in Redis: generation {after.id} created, acknowledged"
    if before.acknowledged:
        return f"generation {before.id} was not marked lost: nothing to acknowledge"
    return (
        f"acknowledged: generation {before.lost} was lost (noticed at {before.created_ms});"
        f" the daemons resume on generation {after.id}"
    )


def ack_command(args: argparse.Namespace) -> int:
    """Acknowledge a data loss the daemons reported; print what was acknowledged."""
    settings = settings_from(args.config)

    async def acknowledge(redis: aioredis.Redis) -> list[tuple[Generation | None, Generation]]:
        # Every shard keeps its own marker (on a cluster, a node may lose its shards alone).
        now = wall_ms()
        return [await GenerationStore(redis, k).acknowledge(now) for k in settings.shard_keys()]

    results = with_redis(settings, acknowledge)
    for keys, (before, after) in zip(settings.shard_keys(), results, strict=True):
        prefix = f"shard {keys.shard}: " if settings.shards > 1 else ""
        print(prefix + ack_text(before, after))
    return 0
