"""Run a feed task against a simulated venue and wait on what it does, with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from structlog.testing import LogCapture

from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook, Tick
from watcher.feeds.client import FeedStats, run_feed
from watcher.feeds.spec import FeedSpec
from watcher.feeds.venue import Venue

ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
PRICES = {ETH: Decimal("2300.1"), BTC: Decimal("60000.5"), "PERP_SOL_USDC": Decimal("150.25")}
WAIT = 5.0


@dataclass
class Feed:
    task: asyncio.Task[Any]
    stats: FeedStats
    logs: list[MutableMapping[str, Any]]

    def events(self, name: str) -> list[MutableMapping[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == name]


@contextlib.asynccontextmanager
async def feeding(
    spec: FeedSpec, venue: Venue, book: MarkBook, **kwargs: Any
) -> AsyncIterator[Feed]:
    capture = LogCapture()
    log = structlog.wrap_logger(
        None,
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    kwargs.setdefault("backoff", Backoff(0.01, 0.05))
    stats = FeedStats()
    task = asyncio.create_task(run_feed(spec, venue, book, stats=stats, log=log, **kwargs))
    try:
        yield Feed(task, stats, capture.entries)
    finally:
        task.cancel()
        await asyncio.wait([task])
        # A feed that died on its own is a test failure, not a clean stop.
        if not task.cancelled():
            task.result()


async def eventually(predicate: Any) -> None:
    """Poll a client-side condition (the server side has wait_until)."""
    async with asyncio.timeout(WAIT):
        # Client-side state has no event to wait on: poll it, briefly.
        while not predicate():
            await asyncio.sleep(0.005)


async def take(book: MarkBook) -> dict[str, Tick]:
    async with asyncio.timeout(WAIT):
        await book.wait()
    return book.take(time.monotonic())
