"""Feed alerts: a silent subscription, a reconnect storm, retiring a connection before its age."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from structlog.testing import capture_logs

from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook
from watcher.feeds.client import FeedStats, run_feed
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec


async def run_for(seconds: float, feed: FeedSpec, venue, stats: FeedStats, **kwargs) -> None:
    book = MarkBook.from_feeds([feed])
    task = asyncio.create_task(run_feed(feed, venue, book, stats=stats, **kwargs))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_subscribed_but_silent_is_an_alert_and_a_reconnect() -> None:
    async with OrderlyMarkServer({"PERP_ETH_USDC": Decimal(3000)}, interval=0.02) as server:
        # Frames flow, but none for the symbol asked for (a mistyped one).
        feed = FeedSpec("orderly", server.url, ("PERP_ETHH_USDC",), 1.0, silence_timeout=0.15)
        stats = FeedStats()
        with capture_logs() as logs:
            await run_for(0.5, feed, OrderlyVenue(), stats, backoff=Backoff(0.01, 0.02))
    events = [e["event"] for e in logs]
    assert "feed.silent_subscription" in events
    assert "feed.silent" not in events
    assert stats.silences >= 2
    assert server.connections >= 2


async def test_reconnect_storm_alerts_once_per_storm() -> None:
    async with OrderlyMarkServer({"PERP_ETH_USDC": Decimal(3000)}, interval=0) as server:
        server.drop_on_accept = True
        feed = FeedSpec("orderly", server.url, ("PERP_ETH_USDC",), 1.0)
        stats = FeedStats()
        with capture_logs() as logs:
            await run_for(
                0.6, feed, OrderlyVenue(), stats, backoff=Backoff(0.005, 0.01), storm_after=5
            )
    storms = [e for e in logs if e["event"] == "feed.reconnect_storm"]
    assert stats.attempts > 10
    assert len(storms) == 1
    assert stats.storms == 1


class ShortLivedOrderly(OrderlyVenue):
    max_connection_age = 0.2


async def test_connection_retired_before_its_maximum_age() -> None:
    async with OrderlyMarkServer({"PERP_ETH_USDC": Decimal(3000)}, interval=0.02) as server:
        feed = FeedSpec("orderly", server.url, ("PERP_ETH_USDC",), 1.0)
        stats = FeedStats()
        with capture_logs() as logs:
            await run_for(0.55, feed, ShortLivedOrderly(), stats, backoff=Backoff(0.01, 0.02))
    assert [e["event"] for e in logs].count("feed.retiring") >= 2
    assert server.connections >= 3
    assert stats.marks > 0
