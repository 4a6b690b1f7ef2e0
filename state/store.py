"""The Redis store: read accounts, commit change sets through one Lua script, marks and leases.

Every multi-key change goes through ``lua/commit.lua`` (see its header for
the races each guard prevents). redis-py's Script objects re-load the script
by themselves after a Redis restart (NOSCRIPT), in pipelines too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from state.account import AccountState
from state.changes import ChangeSet
from state.errors import StoreError
from state.keys import Keys

_COMMIT_LUA = resources.files("state").joinpath("lua/commit.lua").read_text()
_TICK_LUA = resources.files("state").joinpath("lua/tick.lua").read_text()

# Renew the lease only if we still hold it: a compare-and-expire, so an
# instance whose lease lapsed can never extend the new holder's lease.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Delete the heartbeat only if this instance wrote it: with several instances
# on one Redis, one stopping must not make the others look dead.
_DROP_HEARTBEAT_LUA = """
local beat = redis.call('GET', KEYS[1])
if beat and cjson.decode(beat).instance == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Delete the lease only if it is still ours (compare-and-delete).
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What the commit script answered: OK, DUP, CONFLICT, LEASE or NX."""

    outcome: str
    version: int
    entry_id: str

    @property
    def ok(self) -> bool:
        """Whether the change set was written."""
        return self.outcome == "OK"


def _result(raw: Sequence[Any]) -> CommitResult:
    def text(x: Any) -> str:
        return x.decode() if isinstance(x, bytes) else str(x)

    outcome = text(raw[0])
    version = text(raw[1]) if len(raw) > 1 else "0"
    return CommitResult(outcome, int(version or 0), text(raw[2]) if len(raw) > 2 else "")


@dataclass(frozen=True, slots=True)
class TickRow:
    """One symbol's conflated tick as the tick script takes it."""

    symbol: str
    price: Decimal
    venue_ts: int
    recv_ms: int
    source: str
    down_bound: float
    up_bound: float


class _Script:
    """A Lua script called by EVALSHA, loaded again when Redis has lost it (NOSCRIPT).

    redis-py's own Script objects check SCRIPT EXISTS in a round trip of
    their own before every pipeline; this keeps a pipeline one round trip.
    """

    def __init__(self, redis: aioredis.Redis, source: str) -> None:
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def many(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run the script once per (keys, args), pipelined, in order."""
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                break
            # A restarted Redis: nothing of these ran; load the script and rerun them.
            await self.redis.script_load(self.source)
            todo = missing
        return results

    async def one(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script once."""
        return (await self.many([(keys, args)]))[0]


class Store:
    """liqwatch's state in Redis, for one shard."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._commit = _Script(redis, _COMMIT_LUA)
        self._tick = _Script(redis, _TICK_LUA)
        self._renew = _Script(redis, _RENEW_LUA)
        self._release = _Script(redis, _RELEASE_LUA)
        self._drop_heartbeat = _Script(redis, _DROP_HEARTBEAT_LUA)

    async def load(self, account: str) -> AccountState:
        """Read one account (an empty one if Redis has none)."""
        return (await self.load_many([account]))[account]

    async def load_many(
        self, accounts: Iterable[str], broken: dict[str, StoreError] | None = None
    ) -> dict[str, AccountState]:
        """Read several accounts in one pipelined round trip.

        An account Redis holds in a form the store cannot read raises
        StoreError, or, when ``broken`` is given, is left out and recorded
        there, so that one bad account cannot stop everyone else's decisions.
        """
        names = list(dict.fromkeys(accounts))
        if not names:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.account(name))
            pipe.hgetall(self.keys.positions(name))
        replies = await pipe.execute()
        out: dict[str, AccountState] = {}
        for i, name in enumerate(names):
            fields, positions = replies[2 * i], replies[2 * i + 1]
            if not fields and not positions:
                out[name] = AccountState.empty(name)
                continue
            try:
                out[name] = AccountState.from_redis(name, fields, positions)
            except StoreError as exc:
                if broken is None:
                    raise
                broken[name] = exc
        return out

    async def commit(self, change: ChangeSet) -> CommitResult:
        """Apply one change set atomically."""
        return _result(await self._commit.one(change.keys, [change.argument()]))

    async def commit_many(self, changes: Sequence[ChangeSet]) -> list[CommitResult]:
        """Apply several independent change sets in one pipelined round trip."""
        if not changes:
            return []
        raw = await self._commit.many([(c.keys, [c.argument()]) for c in changes])
        return [_result(r) for r in raw]

    async def acquire_lease(self, owner: str, ttl_ms: int) -> Literal["renewed", "acquired", ""]:
        """Renew the input lease if it is ours, else take it if it is free; "" if neither.

        "acquired" means it was not ours a moment ago, even if we held it
        before: whoever held it in between may have left entries pending.
        """
        key = self.keys.input_lease
        if await self._renew.one([key], [owner, ttl_ms]):
            return "renewed"
        return "acquired" if await self.redis.set(key, owner, nx=True, px=ttl_ms) else ""

    async def release_lease(self, owner: str) -> None:
        """Give the lease up at shutdown so another instance need not wait for it to lapse."""
        await self._release.one([self.keys.input_lease], [owner])

    async def record_and_query(
        self, rows: Sequence[TickRow]
    ) -> list[tuple[list[bytes], list[bytes]]]:
        """Record each row's mark (LIVE) for operators and query the index, in one command.

        Each answer holds the members of the symbol's down set scored >=
        ``down_bound`` and of its up set scored <= ``up_bound``.
        """
        if not rows:
            return []
        keys: list[str] = []
        args: list[str | int] = []
        for r in rows:
            keys += [self.keys.mark(r.symbol), self.keys.index(r.symbol, "down"),
                     self.keys.index(r.symbol, "up")]  # fmt: skip
            args += [str(r.price), r.venue_ts, r.recv_ms, "LIVE", r.source,
                     repr(r.down_bound), repr(r.up_bound)]  # fmt: skip
        replies = await self._tick.one(keys, args)
        return [(replies[2 * i], replies[2 * i + 1]) for i in range(len(rows))]

    async def set_mark_status(self, symbol: str, status: str) -> None:
        """Record a symbol's LIVE/STALE transition."""
        await self.redis.hset(self.keys.mark(symbol), "status", status)

    async def drop_heartbeat(self, instance: str) -> None:
        """Delete the heartbeat key at a clean stop, if ``instance`` wrote the current one."""
        await self._drop_heartbeat.one([self.keys.health], [instance])

    async def liquidating_before(self, ms: int) -> tuple[int, str | None, int]:
        """Count liquidations claimed before ``ms``; name the oldest and its claim time."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(self.keys.liquidating, "-inf", ms)
        pipe.zrange(self.keys.liquidating, 0, 0, withscores=True)
        count, oldest = await pipe.execute()
        if not count:
            return 0, None, 0
        member, score = oldest[0]
        return int(count), member.decode(), int(score)
