"""``liqwatch demo``: the whole job on an embedded default, everything on loopback.

A throwaway redis-server, a simulated Orderly mark-price server walking six
markets with occasional sharp moves, a generated book loaded through the
input stream, the daemon, a demo executor writing the closing updates back,
and a console view of marks and liquidations. Ctrl-C stops all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from state.inputs import validate_lines
from state.store import Store
from state.store.client import open_client
from watcher.daemon.app import run_daemon
from watcher.daemon.config import Settings
from watcher.daemon.logs import configure_logging
from watcher.demo.book import demo_book, demo_markets, demo_marks
from watcher.demo.console import ConsoleView
from watcher.demo.executor import DemoExecutor
from watcher.demo.redis_server import RedisServer
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.feeds.spec import FeedSpec

# Runs beside the demo (``liqwatch demo --record``): given the settings, the
# feed (paused until the companion resumes it), the stop event and the
# duration, which the companion then owns (it sets ``stop`` itself).
Companion = Callable[
    [Settings, OrderlyMarkServer, asyncio.Event, float | None], Coroutine[Any, Any, None]
]


async def run_demo(
    *,
    accounts: int = 1500,
    seed: int = 7,
    duration: float | None = None,
    interval: float = 1.0,
    out: TextIO = sys.stdout,
    companion: Companion | None = None,
) -> int:
    """Run the demo until Ctrl-C (or ``duration`` seconds); return the number of liquidations."""
    configure_logging("console", logging.WARNING, drop=frozenset({"liquidation.emitted"}))
    markets = demo_markets()
    marks = demo_marks()
    stop = asyncio.Event()
    with RedisServer() as redis_server:
        feed = OrderlyMarkServer(
            marks,
            interval=interval,
            random_walk=True,
            seed=seed,
            volatility=0.002,
            jump_probability=0.005,
        )
        async with feed:
            if companion is not None:
                feed.pause()
            settings = Settings(
                redis_url=redis_server.url,
                prefix="liq",
                feeds=(FeedSpec("orderly", feed.url, tuple(markets), stale_after=5.0),),
                markets=markets,
                instance="demo",
                heartbeat_interval=1.0,
            )
            print(
                f"liqwatch demo: redis {redis_server.url}, Orderly-format feed {feed.url},"
                f" {len(markets)} markets; Ctrl-C to stop",
                file=out,
                flush=True,
            )
            redis = open_client(redis_server.url)
            try:
                book = demo_book(accounts, seed).messages
                messages = validate_lines(book, markets, source="demo book")
                await Store(redis, settings.keys).append_input(messages)
                print(f"loaded {len(messages)} input messages for {accounts} accounts", file=out)
                executor = DemoExecutor(redis, settings.keys, reopen_probability=0.5)
                console = ConsoleView(redis, settings.keys, sorted(markets), out=out)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(run_daemon(settings, stop=stop))
                    tg.create_task(executor.run(stop))
                    tg.create_task(console.run(stop))
                    if companion is not None:
                        tg.create_task(companion(settings, feed, stop, duration))
                    elif duration is not None:
                        tg.create_task(_stop_after(stop, duration))
                return sum(console.totals.values())
            finally:
                await redis.aclose()


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    stop.set()
