"""Events, settings and a running notifier for the notifier's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

from redis.exceptions import ResponseError

from state.events import EventLeg, LiquidationEvent
from state.keys import Keys
from state.models import MarginMode, Seq
from tests.helpers.wait import wait_for  # noqa: F401 (the notify tests' waiter)
from watcher.daemon.config import Settings
from watcher.notify.app import Notifier
from watcher.notify.config import Delivery, NotifySettings, SinkSpec, SinkType
from watcher.notify.secret import Secret

PREFIX = "nt"
KEYS = Keys(PREFIX)
ETH = "PERP_ETH_USDC"
BTC = "PERP_BTC_USDC"
HMAC_KEY = "hmac-key-never-shown-7f3a"
ROUTING_KEY = "routing-key-never-shown-91bc"
# Short enough that a test finishes in seconds.
FAST = Delivery(
    timeout=0.5,
    max_tries=4,
    backoff_base=0.01,
    backoff_cap=0.05,
    summary_window=0.5,
    max_messages_per_window=1000,
)


def event(n: int, symbol: str = ETH, *, equity: str = "-1") -> LiquidationEvent:
    """The n-th test liquidation: an ISOLATED long of 2 at mark 1000 + n."""
    mark = Decimal(1000 + n)
    return LiquidationEvent(
        id=f"A{n}:ISOLATED:{symbol}:1",
        kind=MarginMode.ISOLATED,
        account=f"A{n}",
        symbol=symbol,
        positions=(EventLeg(symbol, MarginMode.ISOLATED, Decimal(2), mark, Decimal(10), mark),),
        mark_price=mark,
        marks={symbol: mark},
        liq_price=mark,
        equity=Decimal(equity),
        maintenance_margin=Decimal(5),
        mark_ts=1_700_000_000_000 + n,
        detected_ts=1_700_000_000_000 + n,
        seq=Seq.of(n),
    )


async def append(redis: Any, events: Sequence[LiquidationEvent], keys: Keys = KEYS) -> list[str]:
    """XADD the events to the events stream (pipelined); return their entry ids."""
    ids: list[str] = []
    for start in range(0, len(events), 1000):
        pipe = redis.pipeline(transaction=False)
        for e in events[start : start + 1000]:
            pipe.xadd(keys.events, e.to_fields())
        ids += [i.decode() for i in await pipe.execute()]
    return ids


def settings(redis_url: str) -> Settings:
    """Daemon settings with only what the notifier reads: Redis and the prefix."""
    return Settings(redis_url=redis_url, prefix=PREFIX, feeds=(), markets={})


def webhook(name: str, url: str, delivery: Delivery = FAST, key: str = HMAC_KEY) -> SinkSpec:
    return SinkSpec(name, SinkType.WEBHOOK, Secret(url), delivery, secret=Secret(key))


def slack(name: str, url: str, delivery: Delivery = FAST) -> SinkSpec:
    return SinkSpec(name, SinkType.SLACK, Secret(url), delivery)


def pagerduty(name: str, url: str, delivery: Delivery = FAST) -> SinkSpec:
    return SinkSpec(
        name, SinkType.PAGERDUTY, Secret(url), delivery, routing_key=Secret(ROUTING_KEY)
    )


def notify_settings(*sinks: SinkSpec, **options: Any) -> NotifySettings:
    options.setdefault("consumer", "test-notifier")
    options.setdefault("start", "all")
    return NotifySettings(sinks=tuple(sinks), **options)


@contextlib.asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    """Run the notifier in a task; stop it (and surface its errors) at the end.

    A notifier that ends by itself interrupts the test at once with its error,
    instead of leaving it to time out.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    test = asyncio.current_task()
    assert test is not None
    task.add_done_callback(lambda _: None if stop.is_set() else test.cancel())
    died = False
    try:
        yield notifier
    except asyncio.CancelledError:
        if not task.done() or stop.is_set():
            raise
        died = True
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    if died:
        raise AssertionError("the notifier stopped by itself")


async def has_group(redis: Any, group: str = "notify", keys: Keys = KEYS) -> bool:
    """Whether the events stream has the group yet."""
    try:
        groups = await redis.xinfo_groups(keys.events)
    except ResponseError:  # no stream yet
        return False
    return any(g["name"] == group.encode() for g in groups)


async def group_pending(redis: Any, group: str = "notify", keys: Keys = KEYS) -> int:
    """How many entries the group has read and not acknowledged."""
    info = await redis.xpending(keys.events, group)
    return int(info["pending"])
