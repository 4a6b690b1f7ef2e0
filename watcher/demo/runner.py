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
from decimal import Decimal
from typing import Any, TextIO

from state.inputs import validate_lines
from state.store import Store
from state.store.client import open_client
from state.warning_levels import WarningRules
from watcher.daemon.app import run_daemon
from watcher.daemon.config import Settings
from watcher.daemon.logs import configure_logging
from watcher.demo.book import demo_book, demo_markets, demo_marks
from watcher.demo.console import ConsoleView
from watcher.demo.executor import DemoExecutor
from watcher.demo.redis_server import RedisServer, free_port
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.demo.sink import PrintingSink
from watcher.feeds.spec import FeedSpec
from watcher.notify.app import Notifier
from watcher.notify.config import NotifySettings, parse_notify

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
    configure_logging(
        "console", logging.WARNING, drop=frozenset({"liquidation.emitted", "warning.emitted"})
    )
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
            metrics_port = free_port()
            settings = Settings(
                redis_url=redis_server.url,
                prefix="liq",
                feeds=(FeedSpec("orderly", feed.url, tuple(markets), stale_after=5.0),),
                markets=markets,
                instance="demo",
                heartbeat_interval=1.0,
                metrics_listen=f"127.0.0.1:{metrics_port}",
                warnings=WarningRules.build(
                    {s: m.maintenance for s, m in markets.items()}, Decimal("1.5"), Decimal("1.6")
                ),
            )
            print(
                f"liqwatch demo: redis {redis_server.url}, Orderly-format feed {feed.url},"
                f" {len(markets)} markets; Ctrl-C to stop",
                file=out,
                flush=True,
            )
            print(
                f"metrics: http://127.0.0.1:{metrics_port}/metrics  readiness:"
                f" http://127.0.0.1:{metrics_port}/ready",
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
                console = ConsoleView(redis, settings.keys, sorted(markets), out=out, warnings=True)
                async with PrintingSink(DEMO_SECRET, out) as sink, asyncio.TaskGroup() as tg:
                    print(
                        f"notifier: liquidations go to a signed webhook at {sink.url}"
                        f" (at most {NOTIFY_BUDGET} messages per 5 s, then a summary per symbol)",
                        file=out,
                        flush=True,
                    )
                    notifier = Notifier(settings, _notify_settings(sink.url), redis)
                    tg.create_task(run_daemon(settings, stop=stop))
                    tg.create_task(executor.run(stop))
                    tg.create_task(console.run(stop))
                    tg.create_task(notifier.run(stop))
                    if companion is not None:
                        tg.create_task(companion(settings, feed, stop, duration))
                    elif duration is not None:
                        tg.create_task(_stop_after(stop, duration))
                return sum(console.totals.values())
            finally:
                await redis.aclose()


# The demo notifier's webhook key and message budget per 5-second window.
DEMO_SECRET = "demo-secret"
NOTIFY_BUDGET = 3


def _notify_settings(url: str) -> NotifySettings:
    return parse_notify(
        {
            "notify": {
                "start": "all",
                "summary_window": 5.0,
                "max_messages_per_window": NOTIFY_BUDGET,
                "sinks": [{"name": "demo", "type": "webhook", "url": url, "secret": DEMO_SECRET}],
            }
        }
    )


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    stop.set()
