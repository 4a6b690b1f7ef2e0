"""``liqwatch health``: exit 0 if the daemon beats and decides, 1 with the reason if not.

One shard: not healthy without a heartbeat (the daemon is down, or has not
beaten within its TTL), with a stale one, one that says the daemon cannot
reach Redis (DEGRADED) or holds its decisions because Redis lost its data
(DATA_LOST), or a data generation marker that says the data was lost and
nobody acknowledged it. S shards: healthy when every shard is held by a
worker whose heartbeat is fresh and OK and no shard's data is lost; it
prints each shard's owner and each worker's shards.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis.asyncio as aioredis

from state.errors import StoreError
from state.store.generation import Generation
from state.store.shards import ShardStore
from watcher.cli.context import Failed, settings_from, with_redis
from watcher.clock import wall_ms
from watcher.daemon.config import Settings


def heartbeat_verdict(
    raw: bytes | str | None, now_ms: int, max_age: float, marker: Generation | None = None
) -> tuple[bool, str]:
    """Judge a heartbeat (and the generation marker): (healthy, the heartbeat or why not)."""
    if marker is not None and not marker.acknowledged:
        return False, (
            f"data lost: Redis no longer holds generation {marker.lost} (noticed at"
            f" {marker.created_ms}); reload the book, then run liqwatch ack-data-loss"
        )
    if raw is None:
        return False, "no heartbeat: the daemon is not running or has not beaten within its TTL"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        beat = json.loads(text)
        ts = int(beat["ts"])
    except (ValueError, TypeError, KeyError):
        return False, f"unreadable heartbeat: {text[:200]!r}"
    who = beat.get("instance", "?")
    age = (now_ms - ts) / 1000
    if age > max_age:
        return False, f"stale heartbeat: {who} last beat {age:.1f} s ago (max {max_age:g} s)"
    state = beat.get("state", "OK")
    if state == "DATA_LOST":
        return False, f"{who} holds its decisions: {beat.get('held') or 'Redis lost its data'}"
    if state != "OK":
        error = (beat.get("redis") or {}).get("last_error")
        return False, f"{who} is {state}: Redis does not answer reliably ({error})"
    return True, text


async def _read(redis: aioredis.Redis, health_key: str, marker_key: str) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    pipe.get(health_key)
    pipe.get(marker_key)
    return list(await pipe.execute())


async def _read_shards(redis: aioredis.Redis, settings: Settings) -> dict[str, Any]:
    shards = ShardStore(redis, settings.keys, settings.shards)
    owners = await shards.owners()
    workers = sorted({w for w, _ in await shards.workers()} | {o for o in owners if o})
    pipe = redis.pipeline(transaction=False)
    for worker in workers:
        pipe.get(settings.keys.worker_health(worker))
    for keys in settings.shard_keys():
        pipe.get(keys.generation)
    replies = await pipe.execute()
    return {
        "owners": owners,
        "beats": dict(zip(workers, replies[: len(workers)], strict=True)),
        "markers": replies[len(workers) :],
    }


def shards_verdict(
    owners: list[str | None],
    beats: dict[str, bytes | str | None],
    markers: list[Generation | None],
    now_ms: int,
    max_age: float,
) -> tuple[bool, dict[str, Any]]:
    """Judge S shards: each held by a worker whose heartbeat is fresh and OK, no data lost.

    Returns (healthy, a report: each shard's owner, each worker's shards and
    verdict, and the problems found).
    """
    problems: list[str] = []
    workers: dict[str, Any] = {}
    for worker, raw in beats.items():
        ok, text = heartbeat_verdict(raw, now_ms, max_age)
        workers[worker] = {
            "shards": [k for k, owner in enumerate(owners) if owner == worker],
            "healthy": ok,
            "heartbeat": json.loads(text) if ok else text,
        }
    for shard, owner in enumerate(owners):
        if owner is None:
            problems.append(f"shard {shard} is held by no worker")
        elif not workers.get(owner, {}).get("healthy"):
            why = workers.get(owner, {}).get("heartbeat", "no heartbeat")
            problems.append(f"shard {shard} is held by {owner}, which is not healthy: {why}")
    for shard, marker in enumerate(markers):
        if marker is not None and not marker.acknowledged:
            problems.append(
                f"shard {shard}: data lost (generation {marker.lost} gone, noticed at"
                f" {marker.created_ms}); reload the book, then run liqwatch ack-data-loss"
            )
    report = {
        "shards": {str(k): owner for k, owner in enumerate(owners)},
        "workers": workers,
        "problems": problems,
    }
    return not problems, report


def health_command(args: argparse.Namespace) -> int:
    """Print the heartbeat and return 0 if the daemon is healthy; raise Failed otherwise."""
    settings = settings_from(args.config)
    if settings.shards > 1:
        read = with_redis(settings, lambda r: _read_shards(r, settings))
        try:
            markers = [None if m is None else Generation.from_json(m) for m in read["markers"]]
        except StoreError as exc:
            raise Failed(str(exc)) from None
        healthy, report = shards_verdict(
            read["owners"], read["beats"], markers, wall_ms(), args.max_age
        )
        if not healthy:
            raise Failed("; ".join(report["problems"]))
        print(json.dumps(report))
        return 0
    keys = settings.keys
    raw, marker_raw = with_redis(settings, lambda r: _read(r, keys.health, keys.generation))
    try:
        marker = None if marker_raw is None else Generation.from_json(marker_raw)
    except StoreError as exc:
        raise Failed(str(exc)) from None
    healthy, text = heartbeat_verdict(raw, wall_ms(), args.max_age, marker)
    if not healthy:
        raise Failed(text)
    print(text)
    return 0
