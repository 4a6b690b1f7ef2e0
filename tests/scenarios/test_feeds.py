"""docs/reliability.md scenarios 1-4 against a whole daemon (scenario 2 also against one feed)."""

from __future__ import annotations

import asyncio
import tracemalloc
from decimal import Decimal

import orjson
import pytest
from structlog.testing import capture_logs

from tests.helpers.harness import Harness
from watcher.demo.redis_server import RedisServer
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook
from watcher.feeds.client import FeedStats, run_feed
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec

ETH = "PERP_ETH_USDC"


async def test_scenario_1_silent_feed(redis_server: RedisServer, redis_client) -> None:
    stale_after = 0.4
    async with Harness(redis_server.url, {ETH: "3000"}, stale_after=stale_after) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("P")
        keys = h.daemon.store.keys
        with capture_logs() as logs:
            h.server.pause()  # TCP open, no frames
            for price in ("2900", "2500", "2000", "1500"):  # crossing many levels, unseen
                h.server.set_price(ETH, Decimal(price))
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(stale_after + 1):
                while await h.redis.hget(keys.mark(ETH), "status") != b"STALE":
                    await asyncio.sleep(0.01)
            assert asyncio.get_running_loop().time() - started <= stale_after + 1
            await asyncio.sleep(0.3)
            assert await h.events() == []
            h.server.resume()
            await h.tick({ETH: "2800"})  # fresh, and not past the price: nothing
            assert await h.events() == []
            await h.tick({ETH: "2700"})
        assert [e["event"] for e in logs].count("feed.stale") == 1
        (event,) = await h.events()
        assert Decimal(event["mark_price"]) == 2700


async def test_scenario_2_accept_then_close_a_thousand_times() -> None:
    async with OrderlyMarkServer({ETH: Decimal(3000)}, interval=0) as server:
        server.drop_on_accept = True
        feed = FeedSpec("orderly", server.url, (ETH,), 1.0)
        stats = FeedStats()
        book = MarkBook.from_feeds([feed])
        tracemalloc.start()
        try:
            # No log capture here: a captured log keeps every entry, which is
            # memory growth of the test's own making.
            task = asyncio.create_task(
                run_feed(
                    feed,
                    OrderlyVenue(),
                    book,
                    stats=stats,
                    backoff=Backoff(0.0002, 0.001),
                    storm_after=5,
                    open_timeout=2,
                )
            )
            async with asyncio.timeout(60):
                while stats.attempts < 100:
                    await asyncio.sleep(0.01)
                baseline = tracemalloc.take_snapshot()
                while stats.attempts < 1000:
                    await asyncio.sleep(0.01)
            after = tracemalloc.take_snapshot()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(baseline, "filename"))
    # 900 more connections leave no trace: well under a kilobyte each would be a leak.
    assert growth < 256 * 1024, f"memory grew by {growth} bytes over 900 reconnects"
    assert stats.storms == 1  # one feed.reconnect_storm alert for the whole storm
    assert stats.marks == 0


INVALID_PRICES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "0",
    "-1",
    '"1e400"',
    "1e400",
    "1" * 5000,
    '"1_000"',
    '"\u0663\u0660\u0660\u0660"',
    '" 3000"',
    '"3000 "',
    '""',
    "null",
    "true",
    "[3000]",
]


@pytest.mark.parametrize("raw", INVALID_PRICES)
async def test_scenario_3_invalid_prices_change_nothing(redis_server, redis_client, raw) -> None:
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("P")
        book = h.daemon.book
        before = sum(book.rejected.values())
        frame = (
            f'{{"topic":"markprices","ts":{h.last_ts + 1000},'
            f'"data":[{{"symbol":"{ETH}","price":{raw}}}]}}'
        )
        await h.server.send_raw(frame)
        await h.tick({ETH: "2999"})  # a valid frame after it: the daemon went on
        assert await h.events() == []
        assert h.daemon.engine.marks[ETH].price == Decimal("2999")
        stats = h.daemon.feed_stats[0]
        assert sum(book.rejected.values()) > before or sum(stats.frame_errors.values()) > 0


async def test_scenario_3_missing_fields_and_unknown_symbols(redis_server, redis_client) -> None:
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("P")
        ts = h.last_ts + 1000
        for data in (
            [{"symbol": ETH}],
            [{"price": 2000}],
            [{"symbol": "PERP_X_USDC", "price": 1}],
            {"symbol": ETH},
        ):
            await h.server.send_raw(orjson.dumps({"topic": "markprices", "ts": ts, "data": data}))
        await h.server.send_raw(
            orjson.dumps({"topic": "markprices", "data": [{"symbol": ETH, "price": 1}]})
        )
        await h.tick({ETH: "2999"})
        assert await h.events() == []
        assert h.daemon.engine.marks[ETH].price == Decimal("2999")


async def test_scenario_4_old_duplicate_and_replayed_ticks(redis_server, redis_client) -> None:
    async with Harness(redis_server.url, {ETH: "3000"}) as h:
        await h.start()
        await h.tick({ETH: "3000"})
        await h.isolated_long("P")
        old = h.last_ts
        await h.tick({ETH: "2900"})
        # An older tick (a replay after reconnect) at a liquidating price: dropped.
        frame = {"topic": "markprices", "ts": old, "data": [{"symbol": ETH, "price": 2000.0}]}
        await h.server.send_raw(orjson.dumps(frame))
        # The same ts as the last accepted, same price: a duplicate, ignored.
        same = {"topic": "markprices", "ts": h.last_ts, "data": [{"symbol": ETH, "price": 2900.0}]}
        await h.server.send_raw(orjson.dumps(same))
        await h.tick({ETH: "2899"})
        assert await h.events() == []
        assert h.daemon.book.rejected["stale_ts"] >= 1
        assert h.daemon.book.rejected["duplicate_ts"] >= 1
        # A reconnect replays the last frame: still nothing new.
        await h.server.close_clients()
        await h.server.wait_until(lambda: h.server.subscribe_messages >= 2)
        await h.tick({ETH: "2899"})
        await h.tick({ETH: "2700"})
        await h.tick({ETH: "2700.5"})
        (event,) = await h.events()
        assert Decimal(event["mark_price"]) == 2700
