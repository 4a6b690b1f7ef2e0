"""The Redis store: read accounts, commit change sets, record marks, hold leases, append input.

Every multi-key change goes through ``lua/commit.lua`` (see its header for
the races each guard prevents); every script is reloaded by itself after a
Redis restart (NOSCRIPT), in pipelines too (:mod:`state.store.scripts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from state.account import AccountState
from state.changes import ChangeSet
from state.errors import StoreError
from state.keys import INPUT_GROUP, Direction, Keys
from state.models import MarginMode
from state.store.client import is_cluster
from state.store.scripts import Script


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What the commit script answered: OK, DUP, CONFLICT, LEASE, DONE, NX or ERROR.

    ``entry_id``: OK, the entry it appended; NX, the event that made the
    claim; ERROR, what Redis said (the change set was refused, not written).
    """

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


# An account's two hashes as HGETALL returns them: fields of the account, of its positions.
RawAccount = tuple[list[bytes], list[bytes]]


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
    # venue_ts of the symbol's last mark whose decisions are all committed (0: none).
    done_ts: int = 0


class Store:
    """liqwatch's state in Redis, for one shard."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._commit = Script(redis, "commit")
        self._load = Script(redis, "load")
        self._tick = Script(redis, "tick")
        self._renew = Script(redis, "renew_lease")
        self._release = Script(redis, "release_lease")
        self._drop_heartbeat = Script(redis, "drop_heartbeat")
        self._warn_query = Script(redis, "warn_query")

    async def load(self, account: str) -> AccountState:
        """Read one account (an empty one if Redis has none)."""
        return (await self.load_many([account]))[account]

    async def load_many(
        self, accounts: Iterable[str], broken: dict[str, StoreError] | None = None
    ) -> dict[str, AccountState]:
        """Read several accounts in one round trip (one script call).

        An account Redis holds in a form the store cannot read raises
        StoreError, or, when ``broken`` is given, is left out and recorded
        there, so that one bad account cannot stop everyone else's decisions.
        """
        names = list(dict.fromkeys(accounts))
        if not names:
            return {}
        keys = self.keys
        replies = await self._load.one(
            [keys.account(names[0])], [keys.account(""), keys.positions(""), *names]
        )
        return self.parse(
            ((name, (replies[2 * i], replies[2 * i + 1])) for i, name in enumerate(names)), broken
        )

    async def commit(self, change: ChangeSet) -> CommitResult:
        """Apply one change set atomically."""
        return (await self.commit_many([change]))[0]

    async def commit_many(self, changes: Sequence[ChangeSet]) -> list[CommitResult]:
        """Apply several independent change sets, each atomically, in one script call."""
        if not changes:
            return []
        replies = await self._commit.one([changes[0].key], [c.argument() for c in changes])
        return [_result(r) for r in replies]

    async def acquire_lease(self, owner: str, ttl_ms: int) -> Literal["renewed", "acquired", ""]:
        """Renew the input lease if it is ours, else take it if it is free; "" if neither.

        "acquired" means it was not ours a moment ago, even if we held it
        before: whoever held it in between may have left entries pending.
        """
        key = self.keys.input_lease
        if await self._renew.one([key], [owner, ttl_ms]):
            return "renewed"
        return "acquired" if await self.redis.set(key, owner, nx=True, px=ttl_ms) else ""

    async def processed_marks(self, symbols: Sequence[str]) -> dict[str, int | None]:
        """Per symbol, the venue_ts of the last mark whose decisions this shard has all committed.

        None where none is recorded (a shard never decided, or before this field existed).
        """
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hget(self.keys.mark(symbol), "done_ts")
        replies = await pipe.execute()
        return {
            s: int(r) or None if r is not None else None
            for s, r in zip(symbols, replies, strict=True)
        }

    async def renew_lease(self, owner: str, ttl_ms: int) -> bool:
        """Extend the input lease if it is still ours; False if it lapsed or another holds it."""
        return bool(await self._renew.one([self.keys.input_lease], [owner, ttl_ms]))

    async def release_lease(self, owner: str) -> None:
        """Give the lease up at shutdown so another instance need not wait for it to lapse."""
        await self._release.one([self.keys.input_lease], [owner])

    async def record_and_query(
        self, rows: Sequence[TickRow], inline: int = 0
    ) -> tuple[list[tuple[list[bytes], list[bytes]]], dict[str, RawAccount]]:
        """Record each row's mark (LIVE) for operators and query the index, in one command.

        Each answer holds the members of the symbol's down set scored >=
        ``down_bound`` and of its up set scored <= ``up_bound``. The state of
        the first ``inline`` candidate accounts comes back in the same call,
        as read (:meth:`parse` makes accounts of it, when they are needed).
        """
        if not rows:
            return [], {}
        keys: list[str] = []
        args: list[str | int] = [inline, self.keys.account(""), self.keys.positions("")]
        for r in rows:
            keys += [
                self.keys.mark(r.symbol),
                self.keys.index(r.symbol, "down"),
                self.keys.index(r.symbol, "up"),
            ]
            args += [
                str(r.price),
                r.venue_ts,
                r.recv_ms,
                "LIVE",
                r.source,
                repr(r.down_bound),
                repr(r.up_bound),
                r.done_ts,
            ]
        replies = await self._tick.one(keys, args)
        flat = replies[-1]
        raw = {flat[i].decode(): (flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)}
        return [(replies[2 * i], replies[2 * i + 1]) for i in range(len(rows))], raw

    async def warn_query(
        self, bounds: Sequence[tuple[str, float, float]], dirty: int, most: int
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Query the warning and re-arm triggers at ``(symbol, down_bound, up_bound)`` marks.

        Returns up to ``dirty`` accounts of the dirty set, and the fired
        members as ``(kind, symbol, account)``, kind ``C`` or ``I``; at most
        ``most`` members per set and symbol.
        """
        keys = [self.keys.warn_dirty]
        args: list[str | int] = [dirty, most]
        for symbol, down, up in bounds:
            keys += [
                self.keys.warn_index(symbol, "down"),
                self.keys.warn_index(symbol, "up"),
                self.keys.rearm_index(symbol, "down"),
                self.keys.rearm_index(symbol, "up"),
            ]
            args += [repr(down), repr(up)]
        replies = await self._warn_query.one(keys, args)
        named = [a.decode() for a in replies[0]]
        fired: list[tuple[str, str, str]] = []
        for i, (symbol, _, _) in enumerate(bounds):
            for members in replies[1 + 4 * i : 5 + 4 * i]:
                for raw in members:
                    member = raw.decode()
                    fired.append((member[0], symbol, member[2:]))
        return named, fired

    async def warning_counts(self) -> dict[str, int]:
        """How many cross accounts and isolated positions are in warning now."""
        cross = await self.redis.zcard(self.keys.warned(MarginMode.CROSS))
        isolated = await self.redis.zcard(self.keys.warned(MarginMode.ISOLATED))
        return {"cross": int(cross), "isolated": int(isolated)}

    @staticmethod
    def parse(
        raw: Iterable[tuple[str, RawAccount]], broken: dict[str, StoreError] | None = None
    ) -> dict[str, AccountState]:
        """Make accounts of their hashes as read; an unreadable one goes to ``broken``.

        Without ``broken``, an unreadable account raises StoreError.
        """
        out: dict[str, AccountState] = {}
        for name, (fields, positions) in raw:
            if not fields and not positions:
                out[name] = AccountState.empty(name)
                continue
            try:
                out[name] = AccountState.from_flat(name, fields, positions)
            except StoreError as exc:
                if broken is None:
                    raise
                broken[name] = exc
        return out

    async def set_mark_status(self, symbol: str, status: str) -> None:
        """Record a symbol's LIVE/STALE transition."""
        await self.redis.hset(self.keys.mark(symbol), "status", status)

    async def drop_heartbeat(self, instance: str, key: str | None = None) -> None:
        """Delete the heartbeat key at a clean stop, if ``instance`` wrote the current one."""
        await self._drop_heartbeat.one([key or self.keys.health], [instance])

    async def input_backlog(self) -> tuple[int | None, int]:
        """The input group's lag (None: Redis cannot tell) and pending count; (0, 0) before it."""
        try:
            groups = await self.redis.xinfo_groups(self.keys.input)
        except ResponseError as exc:
            if "no such key" in str(exc):
                return 0, 0
            raise
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == INPUT_GROUP:
                lag = group.get("lag")
                return (None if lag is None else int(lag)), int(group["pending"])
        return 0, 0

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

    async def append_input(
        self,
        messages: Sequence[bytes],
        *,
        batch: int = 1000,
        progress: Callable[[int], None] | None = None,
        streams: Sequence[str] | None = None,
    ) -> int:
        """Append each message as ``msg`` to the input stream, in order; return how many.

        ``streams``: the input stream of each message (its account's shard),
        when there are several; else this shard's. ``progress`` is called
        after each pipelined batch with the number appended so far.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if streams is not None and len(streams) != len(messages):
            raise ValueError("one stream per message")
        done = 0
        for start in range(0, len(messages), batch):
            pipe = self.redis.pipeline(transaction=False)
            for i in range(start, min(start + batch, len(messages))):
                stream = self.keys.input if streams is None else streams[i]
                pipe.xadd(stream, {"msg": messages[i]})
            await pipe.execute()
            done = min(start + batch, len(messages))
            if progress is not None:
                progress(done)
        return done

    async def scan_accounts(self, cursor: int, count: int) -> tuple[int, list[str]]:
        """One SCAN step over the account hashes: (next cursor, 0 when done; account names)."""
        prefix = self.keys.account("")
        if is_cluster(self.redis):
            # SCAN walks one node: the one holding this shard's slot.
            node = self.redis.get_node_from_key(prefix)  # type: ignore[attr-defined]
            cursors: Any
            cursors, found = await self.redis.scan(
                cursor, match=prefix + "*", count=count, target_nodes=node
            )
            nxt = next(iter(cursors.values()))
        else:
            nxt, found = await self.redis.scan(cursor, match=prefix + "*", count=count)
        names = [(k.decode() if isinstance(k, bytes) else k)[len(prefix) :] for k in found]
        return int(nxt), names

    async def index_scores(
        self, slots: Sequence[tuple[str, Direction, str]]
    ) -> dict[tuple[str, Direction, str], float | None]:
        """Each (symbol, direction, member)'s score in the index, None where it is absent."""
        if not slots:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for symbol, direction, member in slots:
            pipe.zscore(self.keys.index(symbol, direction), member)
        replies = await pipe.execute()
        return {
            slot: None if r is None else float(r) for slot, r in zip(slots, replies, strict=True)
        }

    async def scan_index(
        self, symbol: str, direction: Direction, cursor: int, count: int
    ) -> tuple[int, list[tuple[str, float]]]:
        """One ZSCAN step over an index set: (next cursor, 0 when done; (member, score) pairs)."""
        nxt, pairs = await self.redis.zscan(self.keys.index(symbol, direction), cursor, count=count)
        out: list[tuple[str, float]] = []
        for member, score in pairs:
            out.append(
                (member.decode() if isinstance(member, bytes) else str(member), float(score))
            )
        return int(nxt), out
