"""Venue clock glitches against the Orderly sim: a mark from the future, a clock gone back.

The sim stamps its frames with an injectable clock (its wall clock plus an
offset the test moves); run_feed reads ours through ``wall_clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from tests.helpers.feeds import BTC, ETH, PRICES, WAIT, eventually, feeding, take
from watcher.clock import wall_ms
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.feeds.book import MarkBook, SymbolStatus
from watcher.feeds.client import FeedState
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STALE_AFTER = 1.0


class VenueClock:
    """The sim's clock: our wall clock plus ``offset`` milliseconds."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return wall_ms() + self.offset


@contextlib.asynccontextmanager
async def venue(clock: VenueClock) -> AsyncIterator[OrderlyMarkServer]:
    async with OrderlyMarkServer(PRICES, interval=0, ping_interval=0, clock_ms=clock) as server:
        yield server


def spec_for(server: OrderlyMarkServer, url_tail: str = "", **kwargs: Any) -> FeedSpec:
    kwargs.setdefault("stale_after", STALE_AFTER)
    return FeedSpec("orderly", server.url + url_tail, (ETH, BTC), **kwargs)


async def subscribed(server: OrderlyMarkServer) -> None:
    async with asyncio.timeout(WAIT):
        await server.wait_until(lambda: server.subscribe_messages == 1 and bool(server.clients))


STEPS = itertools.count(1)


async def push_new_prices(server: OrderlyMarkServer) -> None:
    """Push a frame whose every price moved a little: never a duplicate, never a jump."""
    step = next(STEPS)
    for symbol in (ETH, BTC):
        server.set_price(symbol, PRICES[symbol] + Decimal(step) / 10)
    await server.push()


@contextlib.asynccontextmanager
async def streaming(server: OrderlyMarkServer, every: float = 0.02) -> AsyncIterator[None]:
    """Push fresh prices every ``every`` seconds while the block runs: a live venue."""

    async def loop() -> None:
        while True:
            await push_new_prices(server)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_a_mark_stamped_a_day_ahead_is_refused_and_the_correct_ones_flow() -> None:
    clock = VenueClock()
    async with venue(clock) as server:
        spec = spec_for(server)
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, OrderlyVenue(), book, log_interval=60.0) as feed:
            await subscribed(server)
            await push_new_prices(server)
            await take(book)
            clock.offset = DAY_MS
            await push_new_prices(server)
            clock.offset = 0
            await eventually(lambda: book.rejected["future_ts"] == 2)
            glitched = time.monotonic()
            await push_new_prices(server)
            ticks = await take(book)
            assert time.monotonic() - glitched < STALE_AFTER
            assert {s: t.mark.price for s, t in ticks.items()} == {
                s: server.prices[s] for s in (ETH, BTC)
            }
            assert ticks[ETH].mark.venue_ts <= wall_ms()
            assert book.status(ETH, time.monotonic()) is SymbolStatus.LIVE
            assert book.rejected == {"future_ts": 2}
            # Refused at once, never the reference: no resync was needed.
            assert feed.events("feed.clock_skew") == []
            assert feed.stats.clock_resyncs == 0
            [rejected] = feed.events("price.rejected")
            assert rejected["counts"] == {"future_ts": 1}  # the rest of the burst is folded


async def test_a_venue_clock_gone_back_an_hour_is_resynced_within_stale_after() -> None:
    clock = VenueClock()
    async with venue(clock) as server:
        # A token in the query must not reach the logs.
        spec = spec_for(server, "?key=s3cret")
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, OrderlyVenue(), book) as feed:
            await subscribed(server)
            async with streaming(server):
                await take(book)
                clock.offset = -HOUR_MS
                went_back = time.monotonic()
                await eventually(lambda: book.resyncs == 2)
                assert time.monotonic() - went_back < STALE_AFTER
                marks = feed.stats.marks
                await eventually(lambda: feed.stats.marks >= marks + 10)
            latest = book.latest(ETH)
            assert latest is not None
            assert latest.venue_ts < wall_ms() - HOUR_MS + 5000
            # LIVE all along: the resync came before the last good mark went stale.
            assert book.status(ETH, time.monotonic()) is SymbolStatus.LIVE
            assert book.rejected["stale_ts"] >= 2
            # One alert for the frame that resynced both symbols, none after.
            [skew] = feed.events("feed.clock_skew")
            assert skew["symbol"] in (ETH, BTC)
            assert skew["symbols"] == 2
            assert skew["source"] == f"orderly|{server.url}"
            assert HOUR_MS - 2000 <= skew["behind_ms"] <= HOUR_MS + 2000
            assert skew["reference_ts"] - skew["venue_ts"] == skew["behind_ms"]
            assert feed.stats.clock_resyncs == 2
            assert "s3cret" not in repr(feed.logs)


async def test_a_mark_ahead_within_max_ahead_is_taken_then_resynced_away() -> None:
    clock = VenueClock()
    async with venue(clock) as server:
        spec = spec_for(server, max_ahead=2 * 3600.0)
        book = MarkBook.from_feeds([spec])
        async with feeding(spec, OrderlyVenue(), book) as feed:
            await subscribed(server)
            async with streaming(server):
                await take(book)
                clock.offset = HOUR_MS
                await eventually(
                    lambda: (m := book.latest(ETH)) is not None and m.venue_ts > wall_ms()
                )
                clock.offset = 0
                back = time.monotonic()
                await eventually(lambda: book.resyncs == 2)
                assert time.monotonic() - back < STALE_AFTER
            assert "future_ts" not in book.rejected
            [skew] = feed.events("feed.clock_skew")
            assert skew["behind_ms"] >= HOUR_MS - 2000


async def test_max_ahead_is_measured_on_the_feeds_wall_clock() -> None:
    async with venue(VenueClock()) as server:
        # Our clock runs 30 s behind the venue's.
        behind = 30_000
        for max_ahead, taken in ((60.0, True), (10.0, False)):
            spec = spec_for(server, max_ahead=max_ahead)
            book = MarkBook.from_feeds([spec])
            server.subscribe_messages = 0
            async with feeding(
                spec, OrderlyVenue(), book, wall_clock=lambda: wall_ms() - behind
            ) as feed:
                await subscribed(server)
                await push_new_prices(server)
                await eventually(lambda: feed.stats.state is FeedState.LIVE)
                assert (book.latest(ETH) is not None) is taken
                assert book.rejected == ({} if taken else {"future_ts": 2})
            async with asyncio.timeout(WAIT):
                await server.wait_until(lambda: not server.clients)
