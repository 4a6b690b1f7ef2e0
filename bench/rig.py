"""The pieces every measurement drives: a real redis-server, and per book its own key prefix.

A :class:`Shard` is one book in Redis under its own prefix, with the daemon's
own Store, Rules, MarkBook, Engine and InputConsumer wired as ``watcher.daemon.app``
wires them (the input consumer reads the engine's live marks and nudges it).
Marks reach the engine the daemon's way: ``MarkBook.offer`` then ``take``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from bench import book as bookgen
from state.account import AccountState
from state.changes import ChangeSet
from state.keys import Keys
from state.models import MarkPrice
from state.rules import Rules
from state.store import CommitResult, Store, TickRow
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.daemon.logs import configure_logging
from watcher.feeds.book import MarkBook, Tick

# Long enough that no symbol turns STALE while a measurement runs.
STALE_AFTER = 24 * 3600.0
XADD_CHUNK = 5_000
# Where the daemon's log lines go while measuring (opened once, kept for the process).
_DEVNULL: list[Any] = []


def quiet_logs() -> None:
    """Log as the daemon does (JSON lines through orjson, INFO and up), into /dev/null.

    The engine writes a line per liquidation after its commit; that cost is
    the daemon's, so it stays in, but the lines go nowhere.
    """
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115
    real, sys.stderr = sys.stderr, _DEVNULL[0]
    try:
        configure_logging("json")
    finally:
        sys.stderr = real


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max, p10 and p90 of repeated runs."""
    return {
        "median": percentile(values, 0.5),
        "min": min(values),
        "max": max(values),
        "p10": percentile(values, 0.1),
        "p90": percentile(values, 0.9),
        "runs": len(values),
    }


async def machine(redis: aioredis.Redis) -> dict[str, Any]:
    """What the numbers were measured on."""
    server = await redis.info("server")
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "redis_version": server.get("redis_version"),
        "redis_mode": "redis-server on 127.0.0.1, no persistence",
        "loadavg_at_start": os.getloadavg(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class TimedStore(Store):
    """The daemon's Store, timing its round trips and noting when each event's commit returned."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        super().__init__(redis, keys)
        self.timing: defaultdict[str, float] = defaultdict(float)
        # entry id of an event -> perf_counter when the commit that XADDed it returned.
        self.committed: dict[str, float] = {}
        self.record_commits = False

    def reset_timing(self) -> None:
        self.timing.clear()

    async def load_many(self, accounts: Iterable[str], *args: Any) -> dict[str, AccountState]:
        t0 = time.perf_counter()
        out = await super().load_many(accounts, *args)
        self.timing["load_many_s"] += time.perf_counter() - t0
        self.timing["load_many_calls"] += 1
        self.timing["accounts_loaded"] += len(out)
        return out

    async def commit_many(self, changes: Sequence[ChangeSet]) -> list[CommitResult]:
        t0 = time.perf_counter()
        results = await super().commit_many(changes)
        done = time.perf_counter()
        self.timing["commit_many_s"] += done - t0
        self.timing["commit_many_calls"] += 1
        self.timing["commits"] += len(results)
        if self.record_commits:
            for r in results:
                if r.ok and r.entry_id:
                    self.committed[r.entry_id] = done
        return results

    async def record_and_query(self, rows: Sequence[TickRow], *args: Any) -> Any:
        t0 = time.perf_counter()
        out = await super().record_and_query(rows, *args)
        self.timing["record_and_query_s"] += time.perf_counter() - t0
        self.timing["record_and_query_calls"] += 1
        return out


class CountingEngine(Engine):
    """The daemon's Engine, counting the candidates its index queries return."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.candidates: Counter[str] = Counter()

    async def _candidates(self, live: dict[str, Tick], now: float) -> tuple[Any, Any]:
        work, read = await super()._candidates(live, now)
        for w in work.values():
            if w.cross is not None:
                self.candidates["cross"] += 1
            self.candidates["isolated"] += len(w.isolated)
        return work, read


class Shard:
    """One book in Redis under its own prefix, with the daemon's components around it."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, input_batch: int = 200) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.store = TimedStore(redis, self.keys)
        self.rules = Rules(self.keys, bookgen.markets())
        self.marks = MarkBook(dict.fromkeys(bookgen.SYMBOLS, STALE_AFTER))
        self.engine = CountingEngine(self.store, self.rules, self.marks)
        self.nudged: list[str] = []
        self.consumer = InputConsumer(
            self.store,
            self.rules,
            owner="bench",
            live_marks=self.engine.live_marks,
            generation=lambda: self.engine.generation,
            nudge=self.nudged.extend,
            batch=input_batch,
        )
        self._ts = itertools.count(1_700_000_000_000)

    def offer(self, prices: Mapping[str, Decimal]) -> dict[str, int]:
        """Offer one mark per symbol to the mark book, as a feed would; return their venue_ts."""
        now = time.monotonic()
        stamps = {}
        for symbol, price in prices.items():
            ts = next(self._ts)
            self.marks.offer(MarkPrice(symbol, price, ts, now))
            stamps[symbol] = ts
        return stamps

    async def tick(self, prices: Mapping[str, Decimal]) -> None:
        """Offer marks and run the engine over them: one Engine.process batch."""
        self.offer(prices)
        await self.engine.process(self.marks.take(time.monotonic()))

    async def append_input(self, messages: Iterable[bytes]) -> int:
        """XADD every message to the input stream (pipelined); return how many."""
        count = 0
        pipe = self.redis.pipeline(transaction=False)
        for raw in messages:
            pipe.xadd(self.keys.input, {"msg": raw})
            count += 1
            if count % XADD_CHUNK == 0:
                await pipe.execute()
        await pipe.execute()
        return count

    def consumed(self) -> int:
        c = self.consumer.counters
        return c["input_applied"] + c["input_duplicates"] + c["input_dead_letters"]

    async def consume(self, total: int, *, poll: float = 0.02) -> float:
        """Run the input consumer until ``total`` more entries are taken; return the seconds."""
        start_count = self.consumed()
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(self.consumer.run(stop))
        while self.consumed() - start_count < total:
            if task.done():
                task.result()
                raise RuntimeError("the input consumer stopped")
            await asyncio.sleep(poll)
        elapsed = time.perf_counter() - t0
        stop.set()
        await task
        return elapsed

    async def used_memory(self) -> int:
        info = await self.redis.info("memory")
        return int(info["used_memory"])
