"""What the risk views read from Redis: marks, index candidates, accounts in chunks, one event.

Read-only: nothing here writes. The index answers "which accounts can become
liquidatable at these marks" without a scan (docs/design.md, "The index"):

- an isolated position's score is its exact liquidation price, rounded
  toward the mark, so one outside the prices of interest cannot liquidate
  there;
- a cross account's scores are trigger bands: while no leg's mark has
  crossed its leg's trigger, the account's health stays above zero. So an
  account can become liquidatable at a set of marks only if one of its
  triggers is crossed at those marks: on a moved symbol, by the new price;
  on every other symbol, by its current mark already (a trigger the daemon
  has not acted on yet, or a held account).

Every symbol's candidates are thus one range query per index set, the very
query the daemon's tick makes. Where the bands cannot answer (what-if with
other maintenance parameters: the bands were drawn under the old ones),
:func:`all_accounts` scans every account instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import redis.asyncio as aioredis

from state import margin
from state.account import AccountState
from state.errors import StoreError
from state.keys import Keys, split_index_member
from state.models import MaintenanceModel, MarginMode
from state.risk import LiquidationMap, MapBuilder
from state.store.store import Store

# Accounts read per round trip (one script call each).
CHUNK = 1000
# Stream entries read per round trip while looking for an event by its id.
EVENT_PAGE = 1000
_ENTRY_ID = re.compile(r"\d+-\d+")


@dataclass(frozen=True, slots=True)
class StoredMark:
    """A symbol's mark as the daemon last recorded it."""

    symbol: str
    price: Decimal
    status: str
    venue_ts: int | None
    recv_ms: int | None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_marks(redis: aioredis.Redis, keys: Keys) -> dict[str, StoredMark]:
    """Every mark hash of the shard that holds a readable price, by symbol."""
    names: list[str] = []
    prefix = keys.mark("")
    async for key in redis.scan_iter(match=keys.mark_pattern(), count=1000):
        names.append(_text(key))
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    rows = await pipe.execute() if names else []
    out: dict[str, StoredMark] = {}
    for name, raw in zip(names, rows, strict=True):
        f = {_text(k): _text(v) for k, v in raw.items()}
        try:
            price = Decimal(f["price"])
        except (KeyError, InvalidOperation):
            continue
        if not price.is_finite() or price <= 0:
            continue
        symbol = name[len(prefix) :]
        out[symbol] = StoredMark(
            symbol,
            price,
            f.get("status", ""),
            _int(f.get("venue_ts")),
            _int(f.get("recv_ms")),
        )
    return dict(sorted(out.items()))


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@dataclass(frozen=True, slots=True)
class Bounds:
    """A symbol's query: members of ``down`` scored >= ``low``, of ``up`` scored <= ``high``."""

    low: Decimal
    high: Decimal
    cross_only: bool = False


async def crossed(redis: aioredis.Redis, keys: Keys, bounds: Mapping[str, Bounds]) -> set[str]:
    """The accounts with an index member crossed by a price in ``[low, high]`` of its symbol.

    The daemon's own bounds (:func:`state.margin.mark_bound`): a member that a
    tick anywhere in the range would return is returned. ``cross_only``: keep
    only cross members (an isolated position on that symbol cannot change).
    """
    pipe = redis.pipeline(transaction=False)
    order = list(bounds.items())
    for symbol, b in order:
        pipe.zrangebyscore(keys.index(symbol, "down"), margin.mark_bound(b.low, down=True), "+inf")
        pipe.zrangebyscore(keys.index(symbol, "up"), "-inf", margin.mark_bound(b.high, down=False))
    replies: list[Any] = await pipe.execute() if order else []
    out: set[str] = set()
    for i, (_, b) in enumerate(order):
        for raw in (*replies[2 * i], *replies[2 * i + 1]):
            mode, account = split_index_member(_text(raw))
            if b.cross_only and mode is not MarginMode.CROSS:
                continue
            out.add(account)
    return out


async def map_candidates(
    redis: aioredis.Redis,
    keys: Keys,
    symbol: str,
    low: Decimal,
    high: Decimal,
    marks: Mapping[str, Decimal],
) -> set[str]:
    """Accounts that a move of ``symbol`` within ``[low, high]`` may liquidate, others held."""
    bounds = {s: Bounds(p, p, cross_only=True) for s, p in marks.items() if s != symbol}
    bounds[symbol] = Bounds(low, high)
    return await crossed(redis, keys, bounds)


async def whatif_candidates(
    redis: aioredis.Redis, keys: Keys, marks: Mapping[str, Decimal]
) -> set[str]:
    """Accounts that may be liquidatable at ``marks`` (under the parameters the bands hold)."""
    return await crossed(redis, keys, {s: Bounds(p, p) for s, p in marks.items()})


async def all_accounts(store: Store, count: int = 1000) -> list[str]:
    """Every account of the shard (a SCAN: where the index cannot answer)."""
    names: set[str] = set()
    cursor = 0
    while True:
        cursor, found = await store.scan_accounts(cursor, count)
        names.update(found)
        if cursor == 0:
            return sorted(names)


async def read_accounts(
    store: Store,
    names: Iterable[str],
    *,
    chunk: int = CHUNK,
    broken: dict[str, StoreError] | None = None,
) -> AsyncIterator[dict[str, AccountState]]:
    """The accounts, ``chunk`` a round trip; the next chunk is read while one is used."""
    ordered = sorted(names)
    if not ordered:
        return
    pending: asyncio.Task[dict[str, AccountState]] | None = None
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        task = asyncio.create_task(store.load_many(part, broken))
        # Let the request go out before the caller's CPU work takes the loop.
        await asyncio.sleep(0)
        if pending is not None:
            yield await pending
        pending = task
    if pending is not None:
        yield await pending


@dataclass(slots=True)
class MapRead:
    """A map and how it was read: candidates from the index, accounts in Redis, time."""

    map: LiquidationMap
    marks: dict[str, StoredMark]
    candidates: int
    unreadable: dict[str, StoreError]


async def build_map(
    store: Store,
    models: Mapping[str, MaintenanceModel],
    symbol: str,
    *,
    at_equality: bool,
    range_: Decimal,
    step: Decimal,
    chunk: int = CHUNK,
) -> MapRead:
    """Read the marks and the candidates through the index, and build ``symbol``'s map.

    StoreError when ``symbol`` has no mark in Redis.
    """
    stored = await read_marks(store.redis, store.keys)
    if symbol not in stored:
        raise StoreError(f"no mark for {symbol} in Redis: nothing to move")
    marks = {s: m.price for s, m in stored.items()}
    builder = MapBuilder(symbol, marks, models, at_equality=at_equality, range_=range_, step=step)
    low, high = builder.down[-1], builder.up[-1]
    names = await map_candidates(store.redis, store.keys, symbol, low, high, marks)
    broken: dict[str, StoreError] = {}
    async for states in read_accounts(store, names, chunk=chunk, broken=broken):
        for state in states.values():
            builder.add(state)
    return MapRead(builder.result(), stored, len(names), broken)


async def find_event(
    redis: aioredis.Redis, keys: Keys, event_id: str
) -> tuple[str, dict[str, str]] | None:
    """The events-stream entry of a liquidation id (or of a stream entry id), with its fields.

    The idempotency key names the entry while it lives (``liq_id_ttl``);
    after that the stream is searched from the newest entry back.
    """
    if _ENTRY_ID.fullmatch(event_id):
        return _first(await redis.xrange(keys.events, event_id, event_id))
    entry = await redis.get(keys.liq_id(event_id))
    if entry is not None:
        found = _first(await redis.xrange(keys.events, _text(entry), _text(entry)))
        if found is not None and found[1].get("id") == event_id:
            return found
    end = "+"
    while True:
        page: Any = await redis.xrevrange(keys.events, end, "-", count=EVENT_PAGE) or []
        for entry_id, fields in page:
            if _text(fields.get(b"id", fields.get("id", b""))) == event_id:
                return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}
        if len(page) < EVENT_PAGE:
            return None
        end = "(" + _text(page[-1][0])


def _first(entries: Any) -> tuple[str, dict[str, str]] | None:
    if not entries:
        return None
    entry_id, fields = entries[0]
    return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}
