"""Near-liquidation warnings in the bench: what they cost a tick, and how fast they index a book.

A book of its own under its own prefix, loaded through the real input
consumer with ``[warnings]`` on (level 1.5, re-arm 1.6): every account lands
in the dirty set, and the real :class:`WarningWatcher` rounds index them
(measured: accounts per second). Then the same one-symbol wiggle as the
per-tick figure: ``Engine.process`` and one warning round after it, each
timed; the warning round queries four sets per symbol, so, like the
liquidation index, it costs O(log N + k), k the members crossed.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from bench import book as bookgen
from bench import suite
from bench.rig import Shard, percentile, spread
from state.rules import Rules
from state.warning_levels import WarningRules
from watcher.daemon.warnings import WarningWatcher

LEVEL, REARM = Decimal("1.5"), Decimal("1.6")


async def warnings_cost(
    redis: aioredis.Redis, book: bookgen.Book, *, runs: int, ticks: int
) -> dict[str, Any]:
    """Load ``book`` with warnings on, index its warnings, then time ticks with a round each."""
    shard = Shard(redis, f"w{book.positions}")
    rules = dataclasses.replace(
        shard.rules,
        warnings=WarningRules.build(Rules(shard.keys, bookgen.markets()).models, LEVEL, REARM),
    )
    shard.rules = shard.engine.rules = shard.consumer.rules = rules
    await shard.tick(bookgen.start_marks())
    loaded = await suite.load(shard, book)
    watcher = WarningWatcher(
        shard.store,
        rules,
        shard.marks,
        link=shard.engine.link,
        live_marks=shard.engine.live_marks,
        held=lambda: False,
        interval=0.1,
    )
    watcher.cursor = shard.marks.cursor(time.monotonic())
    dirty = await redis.scard(shard.keys.warn_dirty)
    t0 = time.perf_counter()
    rounds = 0
    while await redis.scard(shard.keys.warn_dirty):
        await watcher.round()
        rounds += 1
    index_s = time.perf_counter() - t0
    prices = shard.engine.live_marks()
    symbols = sorted(prices)
    engine_s: list[float] = []
    round_s: list[float] = []
    warned_before = sum(watcher.warned.values())
    for _ in range(runs):
        for i in range(ticks):
            symbol = symbols[i % len(symbols)]
            shard.offer(suite.wiggle({symbol: prices[symbol]}, up=(i // len(symbols)) % 2 == 0))
            batch = shard.marks.take(time.monotonic())
            t1 = time.perf_counter()
            await shard.engine.process(batch)
            t2 = time.perf_counter()
            await watcher.round()
            t3 = time.perf_counter()
            engine_s.append(t2 - t1)
            round_s.append(t3 - t2)
    in_warning = await shard.store.warning_counts()
    await redis.delete(shard.keys.input)
    return {
        "positions": book.positions,
        "accounts": len(book.accounts),
        "input_messages_per_s": loaded["messages_per_s"],
        "dirty_accounts": dirty,
        "index_s": index_s,
        "index_rounds": rounds,
        "accounts_indexed_per_s": dirty / index_s if index_s else None,
        "in_warning": in_warning,
        "ticks": len(engine_s),
        "engine_median_s": percentile(engine_s, 0.5),
        "round_median_s": percentile(round_s, 0.5),
        "round_p99_s": percentile(round_s, 0.99),
        "round_spread_s": spread(round_s),
        "warnings_during_ticks": sum(watcher.warned.values()) - warned_before,
    }
