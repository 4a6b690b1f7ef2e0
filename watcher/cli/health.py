"""``liqwatch health``: exit 0 if the daemon beats and decides, 1 with the reason if not.

Not healthy: no heartbeat (the daemon is down, or has not beaten within its
TTL), a stale one, one that says the daemon cannot reach Redis (DEGRADED) or
holds its decisions because Redis lost its data (DATA_LOST), and a data
generation marker that says the data was lost and nobody acknowledged it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis.asyncio as aioredis

from state.errors import StoreError
from state.store.generation import Generation
from watcher.cli.context import Failed, settings_from, with_redis
from watcher.clock import wall_ms


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


def health_command(args: argparse.Namespace) -> int:
    """Print the heartbeat and return 0 if the daemon is healthy; raise Failed otherwise."""
    settings = settings_from(args.config)
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
