"""Operator views of liqwatch's state in Redis, as JSON-able dicts (``liqwatch inspect``).

Each ``read_*`` coroutine reads what one view needs; each ``describe_*``
function is pure and does the pricing. Values taken from the state (prices,
money, seqs, stream fields) stay strings, exactly as stored or as the margin
math returns them; derived display figures (``distance_pct``, ``age_s``) are
JSON numbers. A distance is ``(price - mark) / mark`` in percent, signed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from state import margin
from state.account import AccountState, StoredPosition
from state.decisions import judge_cross, judge_isolated
from state.events import EventError, LiquidationEvent
from state.keys import INPUT_GROUP, Keys, split_index_member
from state.models import MaintenanceModel, MarginMode, Market, Position
from state.store.client import is_cluster
from state.store.retention import count_entries

# The input consumer's group on the input stream.

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MarkInfo:
    """One symbol's mark hash as written by the daemon; ``price`` None if absent or unusable."""

    symbol: str
    price: Decimal | None
    status: str
    source: str | None
    venue_ts: int | None
    recv_ms: int | None

    def to_json(self, now_ms: int) -> Json:
        """Render for a view, with the age of the last receipt in seconds."""
        age = None if self.recv_ms is None else round((now_ms - self.recv_ms) / 1000, 3)
        return {
            "symbol": self.symbol,
            "price": None if self.price is None else str(self.price),
            "status": self.status,
            "source": self.source,
            "venue_ts": self.venue_ts,
            "recv_ms": self.recv_ms,
            "age_s": age,
        }


def parse_mark(symbol: str, fields: Mapping[bytes, bytes]) -> MarkInfo | None:
    """Read a mark hash; None if there is none."""
    if not fields:
        return None
    f = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    try:
        price: Decimal | None = Decimal(f.get("price", ""))
    except InvalidOperation:
        price = None
    if price is not None and not (price.is_finite() and price > 0):
        price = None
    return MarkInfo(
        symbol,
        price,
        f.get("status", "?"),
        f.get("source"),
        _int(f.get("venue_ts")),
        _int(f.get("recv_ms")),
    )


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def distance_pct(price: Decimal | None, mark: Decimal | None) -> float | None:
    """Return ``(price - mark) / mark`` in percent, rounded to 4 places; None if either is."""
    if price is None or mark is None:
        return None
    return round(float((price - mark) / mark * 100), 4)


# --- account ----------------------------------------------------------------------


def describe_account(
    state: AccountState,
    markets: Mapping[str, Market],
    marks: Mapping[str, MarkInfo],
    *,
    at_equality: bool = False,
) -> Json:
    """Price one account at the current marks: its positions, cross account and isolated ones."""
    models = {s: m.maintenance for s, m in markets.items()}
    ordered = sorted(state.positions.items())
    return {
        "account": state.account,
        "balance": str(state.balance),
        "seq": None if state.seq is None else str(state.seq),
        "version": state.version,
        "status": state.status.value,
        "leverage": {f"{mode.value}|{sym}": str(v) for (mode, sym), v in state.leverage.items()},
        "positions": [_position_row(sp) for _, sp in ordered],
        "cross": _cross(state, models, marks, at_equality),
        "isolated": [
            _isolated(sp.position, models, marks, at_equality)
            for (mode, _), sp in ordered
            if mode is MarginMode.ISOLATED
        ],
    }


def _position_row(sp: StoredPosition) -> Json:
    p = sp.position
    return {
        "symbol": p.symbol,
        "mode": p.margin_mode.value,
        "qty": str(p.qty),
        "entry_price": str(p.entry_price),
        "margin": _s(p.margin),
        "leverage": _s(p.leverage),
        "status": sp.status.value,
        "liq_id": sp.liq_id,
    }


def _mark_fields(symbol: str, marks: Mapping[str, MarkInfo]) -> tuple[Decimal | None, str | None]:
    info = marks.get(symbol)
    return (None, None) if info is None else (info.price, info.status)


def _cross(
    state: AccountState,
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, MarkInfo],
    at_equality: bool,
) -> Json | None:
    legs = [leg for leg in state.cross_legs if leg.qty != 0]
    if not legs:
        return None
    prices: dict[str, Decimal] = {}
    rows: list[Json] = []
    for leg in legs:
        price, status = _mark_fields(leg.symbol, marks)
        if price is not None:
            prices[leg.symbol] = price
        rows.append(
            {
                "symbol": leg.symbol,
                "qty": str(leg.qty),
                "entry_price": str(leg.entry_price),
                "mark": _s(price),
                "mark_status": status,
                "liq_price": None,
                "distance_pct": None,
            }
        )
    out: Json = {
        "missing_marks": [leg.symbol for leg in legs if leg.symbol not in prices],
        "unknown_markets": [leg.symbol for leg in legs if leg.symbol not in models],
        "equity": None,
        "maintenance": None,
        "health": None,
        "margin_ratio": None,
        "notional": None,
        "liquidatable": None,
        "legs": rows,
    }
    if out["missing_marks"] or out["unknown_markets"]:
        return out
    verdict, account = judge_cross(state.balance, legs, models, prices, at_equality=at_equality)
    out.update(
        equity=str(verdict.equity),
        maintenance=str(verdict.maintenance),
        health=str(verdict.health),
        margin_ratio=_s(account.margin_ratio),
        notional=str(account.notional),
        liquidatable=verdict.liquidatable,
    )
    for leg, row in zip(legs, rows, strict=True):
        liq = margin.cross_leg_liq_price(state.balance, legs, models, prices, leg.symbol)
        row["liq_price"] = _s(liq)
        row["distance_pct"] = distance_pct(liq, prices[leg.symbol])
    return out


def _isolated(
    position: Position,
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, MarkInfo],
    at_equality: bool,
) -> Json:
    price, status = _mark_fields(position.symbol, marks)
    row: Json = {
        "symbol": position.symbol,
        "qty": str(position.qty),
        "entry_price": str(position.entry_price),
        "margin": _s(position.margin),
        "mark": _s(price),
        "mark_status": status,
        "known_market": position.symbol in models,
        "equity": None,
        "maintenance": None,
        "health": None,
        "liquidatable": None,
        "liq_price": None,
        "distance_pct": None,
    }
    model = models.get(position.symbol)
    if model is None or position.qty == 0:
        return row
    liq = margin.isolated_liq_price(position, model)
    row["liq_price"] = _s(liq)
    if price is not None:
        verdict = judge_isolated(position, model, price, at_equality=at_equality)
        row.update(
            equity=str(verdict.equity),
            maintenance=str(verdict.maintenance),
            health=str(verdict.health),
            liquidatable=verdict.liquidatable,
            distance_pct=distance_pct(liq, price),
        )
    return row


async def read_marks_of(
    redis: aioredis.Redis, keys: Keys, symbols: Sequence[str]
) -> dict[str, MarkInfo]:
    """Read the mark hashes of ``symbols`` in one round trip; symbols without one are left out."""
    pipe = redis.pipeline(transaction=False)
    for symbol in symbols:
        pipe.hgetall(keys.mark(symbol))
    replies = await pipe.execute() if symbols else []
    marks = {}
    for symbol, fields in zip(symbols, replies, strict=True):
        info = parse_mark(symbol, fields)
        if info is not None:
            marks[symbol] = info
    return marks


async def read_account(
    redis: aioredis.Redis,
    keys: Keys,
    markets: Mapping[str, Market],
    account: str,
    *,
    at_equality: bool = False,
) -> Json | None:
    """Read and price one account; None if Redis holds nothing of it."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.account(account))
    pipe.hgetall(keys.positions(account))
    fields, positions = await pipe.execute()
    if not fields and not positions:
        return None
    state = AccountState.from_redis(account, fields, positions)
    symbols = sorted({symbol for _, symbol in state.positions})
    marks = await read_marks_of(redis, keys, symbols)
    return describe_account(state, markets, marks, at_equality=at_equality)


# --- symbol, marks ------------------------------------------------------------------


def trigger_text(score: float) -> str:
    """Render an index score: the trigger price, or ``always`` for an every-tick member."""
    return "always" if math.isinf(score) else repr(score)


def describe_symbol(
    symbol: str,
    mark: MarkInfo | None,
    down: Sequence[tuple[bytes | str, float]],
    up: Sequence[tuple[bytes | str, float]],
    now_ms: int,
) -> Json:
    """List a symbol's index members nearest to triggering, with distances from its mark."""
    price = None if mark is None else mark.price

    def rows(members: Sequence[tuple[bytes | str, float]]) -> list[Json]:
        out = []
        for raw, score in members:
            member = _text(raw)
            mode, account = split_index_member(member)
            trigger = None if math.isinf(score) else Decimal(repr(score))
            out.append(
                {
                    "member": member,
                    "mode": mode.value,
                    "account": account,
                    "trigger": trigger_text(score),
                    "distance_pct": distance_pct(trigger, price),
                }
            )
        return out

    return {
        "symbol": symbol,
        "mark": None if mark is None else mark.to_json(now_ms),
        "down": rows(down),
        "up": rows(up),
    }


async def read_symbol(
    redis: aioredis.Redis, keys: Keys, symbol: str, limit: int, now_ms: int
) -> Json:
    """Read the ``limit`` members of each index set of ``symbol`` nearest to their trigger."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.mark(symbol))
    # down members fire when the mark falls to their score: the highest are nearest.
    pipe.zrevrange(keys.index(symbol, "down"), 0, limit - 1, withscores=True)
    pipe.zrange(keys.index(symbol, "up"), 0, limit - 1, withscores=True)
    fields, down, up = await pipe.execute()
    return describe_symbol(symbol, parse_mark(symbol, fields), down, up, now_ms)


async def read_marks(redis: aioredis.Redis, keys: Keys, now_ms: int) -> list[Json]:
    """Read every symbol's mark hash, sorted by symbol."""
    start = len(keys.mark(""))
    symbols = sorted({_text(k)[start:] async for k in redis.scan_iter(match=keys.mark_pattern())})
    marks = await read_marks_of(redis, keys, symbols)
    return [marks[s].to_json(now_ms) for s in symbols if s in marks]


# --- streams, in-flight, counters ---------------------------------------------------


def stream_rows(entries: Sequence[tuple[bytes | str, Mapping[bytes, bytes]]]) -> list[Json]:
    """Flatten XRANGE/XREVRANGE entries into dicts with their ``entry_id``, oldest first."""
    rows = [
        {"entry_id": _text(entry_id), **{_text(k): _text(v) for k, v in fields.items()}}
        for entry_id, fields in entries
    ]
    return sorted(rows, key=lambda row: tuple(int(x) for x in row["entry_id"].split("-")))


async def read_events(redis: aioredis.Redis, keys: Keys, count: int) -> list[Json]:
    """Read the last ``count`` liquidation events, oldest first.

    Each row holds the event's fields as stored; an entry that is not a
    readable event keeps its raw fields and says why under ``error``.
    """
    entries: Any = await redis.xrevrange(keys.events, count=count)
    rows = stream_rows(entries)
    for row in rows:
        fields = {k: v for k, v in row.items() if k != "entry_id"}
        try:
            LiquidationEvent.from_fields(fields)
        except EventError as exc:
            row["error"] = str(exc)
    return rows


async def read_dead(redis: aioredis.Redis, keys: Keys, count: int) -> list[Json]:
    """Read the last ``count`` dead letters (msg, reason), oldest first."""
    entries: Any = await redis.xrevrange(keys.dead, count=count)
    return stream_rows(entries)


def describe_liquidating(members: Sequence[tuple[bytes | str, float]], now_ms: int) -> list[Json]:
    """Describe in-flight liquidations, oldest claim first, with their age in seconds."""
    rows = []
    for raw, score in sorted(members, key=lambda m: m[1]):
        member = _text(raw)
        kind, _, rest = member.partition("|")
        account, _, symbol = rest.partition("|")
        rows.append(
            {
                "member": member,
                "mode": MarginMode.CROSS.value if kind == "C" else MarginMode.ISOLATED.value,
                "account": account,
                "symbol": symbol or None,
                "claimed_ms": int(score),
                "age_s": round((now_ms - score) / 1000, 3),
            }
        )
    return rows


async def read_liquidating(redis: aioredis.Redis, keys: Keys, now_ms: int) -> list[Json]:
    """Read the LIQUIDATING set."""
    members: Any = await redis.zrange(keys.liquidating, 0, -1, withscores=True)
    return describe_liquidating(members, now_ms)


async def read_warnings(redis: aioredis.Redis, keys: Keys, count: int, now_ms: int) -> Json:
    """Read what is in warning now (oldest first) and the last ``count`` warning events."""
    members = []
    counts = {}
    for mode in (MarginMode.CROSS, MarginMode.ISOLATED):
        raw: Any = await redis.zrange(keys.warned(mode), 0, -1, withscores=True)
        counts[mode.value.lower()] = len(raw)
        for member, score in raw:
            account, _, symbol = _text(member).partition("|")
            members.append(
                {
                    "mode": mode.value,
                    "account": account,
                    "symbol": symbol or None,
                    "since_ms": int(score),
                    "age_s": round((now_ms - score) / 1000, 3),
                }
            )
    entries: Any = await redis.xrevrange(keys.warnings, count=count)
    return {
        "in_warning": counts,
        "members": sorted(members, key=lambda m: m["since_ms"]),
        "recent": stream_rows(entries),
    }


async def read_stats(redis: aioredis.Redis, keys: Keys) -> Json:
    """Read the counters, the stream lengths and the input group's backlog (None without one)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.stats)
    for stream in (keys.input, keys.dead, keys.events):
        pipe.xlen(stream)
    counters, n_in, n_dead, n_events = await pipe.execute()
    return {
        "counters": {_text(k): _number(_text(v)) for k, v in sorted(counters.items())},
        "streams": {"in": n_in, "dead": n_dead, "events": n_events},
        "input_group": await _input_group(redis, keys),
    }


def _number(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


async def _input_group(redis: aioredis.Redis, keys: Keys) -> Json | None:
    try:
        pending = await redis.xpending(keys.input, INPUT_GROUP)
        groups = await redis.xinfo_groups(keys.input)
    except ResponseError as exc:
        # NOGROUP / no such key: the daemon has not consumed input yet.
        if "NOGROUP" in str(exc) or "no such key" in str(exc):
            return None
        raise
    info = next((g for g in groups if _text(g["name"]) == INPUT_GROUP), {})
    lag = info.get("lag")
    last = info.get("last-delivered-id")
    return {
        "name": INPUT_GROUP,
        "pending": int(pending["pending"]),
        "consumers": {_text(c["name"]): int(c["pending"]) for c in pending["consumers"]},
        "last_delivered_id": None if last is None else _text(last),
        "lag": None if lag is None else int(lag),
    }


# --- executors: the consumer groups of the events stream ----------------------------


def _age_s(entry_id: str | None, now_ms: int) -> float | None:
    # An entry id starts with the ms it was added at: the age counts from there.
    return None if entry_id is None else _seconds(now_ms - int(entry_id.partition("-")[0]))


def _seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def describe_executors(
    stream: str, info: Json | None, groups: Sequence[Json], now_ms: int, warn_after_s: float
) -> Json:
    """Judge a stream's groups as read: entry ages, and warnings past ``warn_after_s``."""
    # ``warning``: the oldest pending entry is too old (its consumer died or
    # is stuck); ``stalled``: the oldest undelivered one is (nobody reads);
    # no group at all: nothing consumes the stream.
    rows, warnings = [], []
    for raw in groups:
        oldest, undelivered = raw["oldest_pending_id"], raw["oldest_undelivered_id"]
        age, waiting = _age_s(oldest, now_ms), _age_s(undelivered, now_ms)
        group = {
            **raw,
            "oldest_pending_age_s": age,
            "oldest_undelivered_age_s": waiting,
            "warning": age is not None and age > warn_after_s,
            "stalled": waiting is not None and waiting > warn_after_s,
        }
        if group["warning"]:
            warnings.append(
                f"group {group['name']}: oldest pending entry {oldest} is {age:.1f} s old"
                f" (over {warn_after_s:g} s), {group['pending']} pending"
            )
        if group["stalled"]:
            warnings.append(
                f"group {group['name']}: entry {undelivered} waits {waiting:.1f} s undelivered"
                f" (over {warn_after_s:g} s), lag {group['lag']}"
            )
        rows.append(group)
    if not rows:
        warnings.append(f"no consumer group on {stream}: nothing is consuming it")
    first = None if info is None else info.get("first-entry")
    last = None if info is None else info.get("last-entry")
    return {
        "stream": stream,
        "length": 0 if info is None else int(info["length"]),
        "first_entry_id": None if not first else _text(first[0]),
        "last_entry_id": None if not last else _text(last[0]),
        "warn_after_s": warn_after_s,
        "groups": rows,
        "warning": bool(warnings),
        "warnings": warnings,
    }


async def read_executors(
    redis: aioredis.Redis, stream: str, now_ms: int, warn_after_s: float
) -> Json:
    """Read every consumer group of ``stream``: consumers, pending entries, their age, lag."""
    # One transaction where Redis is one server; a cluster client's
    # transactions are not reliable in redis-py's asyncio client, and the
    # keys are one stream's, so there it is a plain pipeline to one node.
    pipe = redis.pipeline(transaction=not is_cluster(redis))
    pipe.xinfo_stream(stream)
    pipe.xinfo_groups(stream)
    info, groups = await pipe.execute(raise_on_error=False)
    for reply in (info, groups):
        if isinstance(reply, ResponseError):
            if "no such key" not in str(reply):
                raise reply
            return describe_executors(stream, None, [], now_ms, warn_after_s)
    rows = [await _read_group(redis, stream, group) for group in groups]
    return describe_executors(stream, info, rows, now_ms, warn_after_s)


async def _read_group(redis: aioredis.Redis, stream: str, info: Mapping[str, Any]) -> Json:
    name, last = _text(info["name"]), _text(info["last-delivered-id"])
    # One transaction: the pending summary and the oldest entry agree.
    pipe = redis.pipeline(transaction=not is_cluster(redis))
    pipe.xinfo_consumers(stream, name)
    pipe.xpending(stream, name)
    pipe.xpending_range(stream, name, min="-", max="+", count=1)
    pipe.xrange(stream, min="(" + last, max="+", count=1)
    consumers, summary, oldest, undelivered = await pipe.execute()
    lag = info.get("lag")
    if lag is None:
        # Redis cannot tell after deletions among the undelivered: count them.
        lag = await count_entries(redis, stream, "(" + last, "+")
    first = oldest[0] if oldest else None
    idle = None if first is None else _seconds(int(first["time_since_delivered"]))
    return {
        "name": name,
        "consumers": [
            {
                "name": _text(c["name"]),
                "pending": int(c["pending"]),
                "idle_s": _seconds(int(c["idle"])),
            }
            for c in consumers
        ],
        "pending": int(summary["pending"]),
        "oldest_pending_id": None if first is None else _text(first["message_id"]),
        "oldest_pending_consumer": None if first is None else _text(first["consumer"]),
        "oldest_pending_idle_s": idle,
        "oldest_pending_deliveries": None if first is None else int(first["times_delivered"]),
        "last_delivered_id": last,
        "lag": int(lag),
        "lag_counted": info.get("lag") is None,
        "oldest_undelivered_id": _text(undelivered[0][0]) if undelivered else None,
    }
