"""The Redis store: read accounts, commit change sets through one Lua script, marks and leases.

Every multi-key change goes through ``lua/commit.lua`` (see its header for
the races each guard prevents). redis-py's Script objects re-load the script
by themselves after a Redis restart (NOSCRIPT), in pipelines too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from state.account import AccountState
from state.changes import ChangeSet
from state.errors import StoreError
from state.keys import Keys

_COMMIT_LUA = resources.files("state").joinpath("lua/commit.lua").read_text()

# Renew the lease only if we still hold it: a compare-and-expire, so an
# instance whose lease lapsed can never extend the new holder's lease.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
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


class Store:
    """liqwatch's state in Redis, for one shard."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._commit = redis.register_script(_COMMIT_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

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
        raw = await self._commit(keys=change.keys, args=[change.argument()])
        return _result(raw)

    async def commit_many(self, changes: Sequence[ChangeSet]) -> list[CommitResult]:
        """Apply several independent change sets in one pipelined round trip."""
        if not changes:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for change in changes:
            await self._commit(keys=change.keys, args=[change.argument()], client=pipe)
        return [_result(raw) for raw in await pipe.execute()]

    async def acquire_lease(self, owner: str, ttl_ms: int) -> bool:
        """Take the input lease if it is free, or renew it if it is ours."""
        key = self.keys.input_lease
        if await self._renew(keys=[key], args=[owner, ttl_ms]):
            return True
        return bool(await self.redis.set(key, owner, nx=True, px=ttl_ms))

    async def release_lease(self, owner: str) -> None:
        """Give the lease up at shutdown so another instance need not wait for it to lapse."""
        await self._release(keys=[self.keys.input_lease], args=[owner])

    async def record_and_query(
        self,
        marks: Sequence[tuple[str, Decimal, int, int, str]],
        queries: Sequence[tuple[str, float, float]],
    ) -> list[tuple[list[bytes], list[bytes]]]:
        """Record marks for operators and query the index, in one round trip.

        ``marks``: (symbol, price, venue_ts, recv_ms, status). ``queries``:
        (symbol, down_bound, up_bound); each answer holds the members of the
        down set scored >= down_bound and of the up set scored <= up_bound.
        """
        pipe = self.redis.pipeline(transaction=False)
        for symbol, price, venue_ts, recv_ms, status in marks:
            pipe.hset(
                self.keys.mark(symbol),
                mapping={
                    "price": str(price), "venue_ts": venue_ts, "recv_ms": recv_ms,
                    "status": status,
                },
            )  # fmt: skip
        for symbol, down_bound, up_bound in queries:
            pipe.zrangebyscore(self.keys.index(symbol, "down"), down_bound, "+inf")
            pipe.zrangebyscore(self.keys.index(symbol, "up"), "-inf", up_bound)
        replies = (await pipe.execute())[len(marks) :]
        return [(replies[2 * i], replies[2 * i + 1]) for i in range(len(queries))]

    async def set_mark_status(self, symbol: str, status: str) -> None:
        """Record a symbol's LIVE/STALE transition."""
        await self.redis.hset(self.keys.mark(symbol), "status", status)

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

    async def incr(self, counter: str, by: int = 1) -> None:
        """Bump an operator-visible counter in the stats hash."""
        await self.redis.hincrby(self.keys.stats, counter, by)
