"""The operator views over S shards: each read per shard, then put together.

With one shard every view is exactly as :mod:`watcher.cli.views` reads it.
With several, an account's view reads its own shard; ``events``, ``dead``
and ``liquidating`` merge every shard's rows (each row names its shard);
``stats`` adds the counters and stream lengths up and keeps each shard's
figures under ``shards``; ``symbol`` and ``marks`` take each symbol's
freshest mark and merge the index members; ``executors`` lists every
shard's events stream with its groups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from state.keys import INPUT_GROUP, Keys
from state.models import Market
from state.shards import shard_of
from watcher.cli import views

Json = dict[str, Any]


async def _each(
    shards: Sequence[Keys], read: Callable[[Keys], Awaitable[Any]]
) -> list[tuple[int, Any]]:
    return [(keys.shard, await read(keys)) for keys in shards]


def _by_entry(rows: list[Json]) -> list[Json]:
    return sorted(rows, key=lambda row: tuple(int(x) for x in row["entry_id"].split("-")))


async def read_account(
    redis: aioredis.Redis,
    shards: Sequence[Keys],
    markets: Mapping[str, Market],
    account: str,
    *,
    at_equality: bool,
) -> Json | None:
    """One account, from its own shard."""
    keys = shards[shard_of(account, len(shards))]
    view = await views.read_account(redis, keys, markets, account, at_equality=at_equality)
    if view is not None:
        view["shard"] = keys.shard
    return view


async def read_stream(
    redis: aioredis.Redis,
    shards: Sequence[Keys],
    count: int,
    read: Callable[[aioredis.Redis, Keys, int], Awaitable[list[Json]]],
) -> list[Json]:
    """The last ``count`` entries of a per-shard stream (events, dead) over every shard."""
    rows: list[Json] = []
    for shard, part in await _each(shards, lambda keys: read(redis, keys, count)):
        rows += [{**row, "shard": shard} for row in part]
    return _by_entry(rows)[-count:]


async def read_liquidating(
    redis: aioredis.Redis, shards: Sequence[Keys], now_ms: int
) -> list[Json]:
    """Every shard's in-flight liquidations, oldest claim first."""
    rows: list[Json] = []
    for shard, part in await _each(shards, lambda k: views.read_liquidating(redis, k, now_ms)):
        rows += [{**row, "shard": shard} for row in part]
    return sorted(rows, key=lambda row: row["claimed_ms"])


async def read_warnings(
    redis: aioredis.Redis, shards: Sequence[Keys], count: int, now_ms: int
) -> Json:
    """Every shard's warnings: counts added up, members oldest first, the last events."""
    parts = await _each(shards, lambda k: views.read_warnings(redis, k, count, now_ms))
    counts = {"cross": 0, "isolated": 0}
    members: list[Json] = []
    recent: list[Json] = []
    for shard, part in parts:
        for kind, n in part["in_warning"].items():
            counts[kind] += n
        members += [{**m, "shard": shard} for m in part["members"]]
        recent += [{**r, "shard": shard} for r in part["recent"]]
    return {
        "in_warning": counts,
        "members": sorted(members, key=lambda m: m["since_ms"]),
        "recent": _by_entry(recent)[-count:],
    }


async def read_stats(redis: aioredis.Redis, shards: Sequence[Keys]) -> Json:
    """The counters and stream lengths added up over the shards; each shard's under ``shards``."""
    parts = await _each(shards, lambda keys: views.read_stats(redis, keys))
    counters: dict[str, Any] = {}
    streams = {"in": 0, "dead": 0, "events": 0}
    pending = lag = 0
    lag_known = True
    consumers: dict[str, int] = {}
    for _, part in parts:
        for name, value in part["counters"].items():
            counters[name] = counters.get(name, 0) + value if isinstance(value, int) else value
        for name in streams:
            streams[name] += part["streams"][name]
        group = part["input_group"]
        if group is not None:
            pending += group["pending"]
            if group["lag"] is None:
                lag_known = False
            else:
                lag += group["lag"]
            for consumer, n in group["consumers"].items():
                consumers[consumer] = consumers.get(consumer, 0) + n
    return {
        "counters": dict(sorted(counters.items())),
        "streams": streams,
        "input_group": {
            "name": INPUT_GROUP,
            "pending": pending,
            "consumers": consumers,
            "last_delivered_id": None,
            "lag": lag if lag_known else None,
        },
        "shards": {str(shard): part for shard, part in parts},
    }


async def read_symbol(
    redis: aioredis.Redis, shards: Sequence[Keys], symbol: str, limit: int, now_ms: int
) -> Json:
    """A symbol's members nearest to their trigger over every shard, with its freshest mark."""
    parts = await _each(shards, lambda k: views.read_symbol(redis, k, symbol, limit, now_ms))
    marks = [p["mark"] for _, p in parts if p["mark"] is not None]
    mark = max(marks, key=lambda m: m.get("venue_ts") or 0, default=None)
    down = [{**row, "shard": s} for s, p in parts for row in p["down"]]
    up = [{**row, "shard": s} for s, p in parts for row in p["up"]]
    return {
        "symbol": symbol,
        "mark": mark,
        "down": sorted(down, key=lambda r: -_trigger(r))[:limit],
        "up": sorted(up, key=_trigger)[:limit],
    }


def _trigger(row: Json) -> float:
    return float("inf") if row["trigger"] == "always" else float(row["trigger"])


async def read_marks(
    redis: aioredis.Redis, shards: Sequence[Keys], symbols: Sequence[str], now_ms: int
) -> list[Json]:
    """Each configured symbol's freshest mark over the shards (each shard records its own)."""
    best: dict[str, Json] = {}
    for _, marks in await _each(shards, lambda k: views.read_marks_of(redis, k, symbols)):
        for symbol, info in marks.items():
            row = info.to_json(now_ms)
            if symbol not in best or (row.get("venue_ts") or 0) > (
                best[symbol].get("venue_ts") or 0
            ):
                best[symbol] = row
    return [best[s] for s in sorted(best)]


async def read_executors(
    redis: aioredis.Redis, shards: Sequence[Keys], now_ms: int, warn_after: float
) -> Json:
    """Every shard's events stream and its consumer groups; warnings of all of them."""
    parts = await _each(
        shards, lambda keys: views.read_executors(redis, keys.events, now_ms, warn_after)
    )
    streams = [part for _, part in parts]
    warnings = [w for part in streams for w in part["warnings"]]
    return {
        "streams": streams,
        "warn_after_s": warn_after,
        "warning": bool(warnings),
        "warnings": warnings,
    }
