"""The daemon: one TaskGroup owning the feeds, the engine, the input consumer and the heartbeat.

Redis faults are ridden out (:mod:`watcher.daemon.link`): the daemon starts,
runs and stops while Redis is away, DEGRADED and saying so. Lost data is
noticed (:mod:`watcher.daemon.guard`). Only a bug ends the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog

from state.rules import Rules
from state.store import Store
from state.store.client import open_client
from state.store.generation import GenerationStore
from watcher.clock import wall_ms
from watcher.daemon.audit import Auditor
from watcher.daemon.config import Settings
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.daemon.guard import DataGuard, DataState
from watcher.daemon.lag import LagMeter
from watcher.daemon.link import LinkClosed, RedisLink
from watcher.feeds import make_venue
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook
from watcher.feeds.client import FeedStats, run_feed
from watcher.feeds.spec import FeedSpec


class Daemon:
    """Wire the components of one liqwatch process together."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.store = Store(redis, settings.keys)
        self.rules = Rules(
            settings.keys, settings.markets, settings.at_equality, settings.liq_id_ttl
        )
        self.book = MarkBook.from_feeds(settings.feeds)
        self.link = RedisLink(
            timeout=settings.redis_timeout,
            backoff_cap=settings.redis_backoff_cap,
            drop_idle=lambda: redis.connection_pool.disconnect(inuse_connections=False),
        )
        self.engine = Engine(self.store, self.rules, self.book, link=self.link)
        self.consumer = InputConsumer(
            self.store,
            self.rules,
            owner=settings.instance,
            live_marks=self.engine.live_marks,
            generation=lambda: self.engine.generation,
            nudge=self.engine.nudge,
            link=self.link,
            lease_ttl=settings.lease_ttl,
            batch=settings.input_batch,
            max_deliveries=settings.max_deliveries,
        )
        self.guard = DataGuard(GenerationStore(redis, settings.keys), self.link, hold=self._hold)
        self.auditor = Auditor(
            self.store,
            self.rules,
            self.link,
            live_marks=self.engine.live_marks,
            nudge=self.engine.nudge,
            held=lambda: self.engine.held,
            interval=settings.audit_interval,
            batch=settings.audit_batch,
        )
        self.feed_stats = [FeedStats() for _ in settings.feeds]
        self.lag = LagMeter()
        self._flushed: Counter[str] = Counter()
        self.log = structlog.get_logger().bind(instance=settings.instance)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then finish the work in flight and return."""
        s = self.settings
        self.log.info(
            "daemon.starting",
            redis=s.redacted_redis_url,
            prefix=s.prefix,
            feeds=[f.venue for f in s.feeds],
            markets=len(s.markets),
        )
        async with asyncio.TaskGroup() as tg:
            feeds = [
                tg.create_task(self._feed(feed, stats), name=f"feed-{i}-{feed.venue}")
                for i, (feed, stats) in enumerate(zip(s.feeds, self.feed_stats, strict=True))
            ]
            tg.create_task(self.lag.run(stop), name="loop-lag")
            # Marks flow into the book while the rest waits for Redis, if it must.
            started = await _until(stop, self.guard.start())
            if started:
                tg.create_task(_closing(self.engine.run(stop)), name="engine")
                tg.create_task(_closing(self.consumer.run(stop)), name="input")
                tg.create_task(_closing(self._heartbeat(stop)), name="heartbeat")
                if s.audit_enabled:
                    tg.create_task(_closing(self.auditor.run(stop)), name="audit")
            await stop.wait()
            self.log.info("daemon.stopping", redis=self.link.state.value)
            # Feeds stop taking ticks at once; the engine and the input consumer
            # see ``stop`` and return after the batch in flight; a call waiting
            # on a Redis that does not answer gives up.
            for task in feeds:
                task.cancel()
            self.link.close()
        if started:
            await self.link.once("heartbeat.drop", self._drop_heartbeat)
        self.log.info("daemon.stopped")

    def _hold(self, held: bool) -> None:
        self.engine.held = held
        if not held:
            self.engine.reconcile()

    async def _drop_heartbeat(self) -> None:
        await self.store.drop_heartbeat(self.settings.instance)

    @property
    def state(self) -> str:
        """OK, DEGRADED (Redis does not answer) or DATA_LOST (held until acknowledged)."""
        if self.guard.state is DataState.DATA_LOST:
            return DataState.DATA_LOST.value
        return self.link.state.value

    async def _feed(self, feed: FeedSpec, stats: FeedStats) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_base, s.backoff_cap, reset_after=s.backoff_reset_after)
        await run_feed(
            feed,
            make_venue(feed.venue),
            self.book,
            backoff=backoff,
            stats=stats,
            max_size=s.max_frame_bytes,
        )

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        interval = self.settings.heartbeat_interval
        while not stop.is_set():
            await self.guard.check()
            await self.beat()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    async def beat(self) -> None:
        """Write the heartbeat key (with a TTL) and flush counters into the stats hash."""
        s = self.settings
        live = self.engine.live_marks()
        now_ms = wall_ms()
        body: dict[str, object] = {
            "instance": s.instance,
            "pid": os.getpid(),
            "ts": now_ms,
            "state": self.state,
            "redis": {
                "state": self.link.state.value,
                "outages": self.link.outages,
                "last_error": self.link.last_error,
            },
            "generation": None if self.guard.seen is None else self.guard.seen.id,
            "held": self.guard.reason,
            "input_leader": self.consumer.leader,
            "live": sorted(live),
            "stale": sorted(self.book.symbols - live.keys()),
            "feeds": [
                {
                    "venue": f.venue,
                    "state": st.state.value,
                    "attempts": st.attempts,
                    "clock_resyncs": st.clock_resyncs,
                }
                for f, st in zip(s.feeds, self.feed_stats, strict=True)
            ],
            "rejected": dict(self.book.rejected),
            "loop_lag_ms": round(self.lag.take() * 1000, 1),
        }
        stuck_before = now_ms - int(s.stuck_after * 1000)
        count, oldest, since = await self.link.call(
            "stuck", lambda: self.store.liquidating_before(stuck_before)
        )
        if count:
            self.log.warning(
                "liquidation.stuck",
                count=count,
                oldest=oldest,
                oldest_age_s=round((now_ms - since) / 1000, 1),
            )
            body["stuck_liquidations"] = count
        totals = self.engine.counters + self.consumer.counters + self.auditor.counters
        deltas = {n: v - self._flushed[n] for n, v in totals.items() if v != self._flushed[n]}

        async def write() -> bool:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.set(s.keys.health, orjson.dumps(body), px=int(s.heartbeat_ttl * 1000))
            for name, delta in deltas.items():
                pipe.hincrby(s.keys.stats, name, delta)
            await pipe.execute()
            return True

        # Once: a counter flush retried after a lost answer would count twice.
        if await self.link.once("heartbeat", write):
            self._flushed = Counter(totals)


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` unless ``stop`` comes first; say whether it ran to the end."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkClosed):
            await task
        return False
    task.result()
    return True


async def _closing(work: Coroutine[Any, Any, None]) -> None:
    """Run a component; at a stop while Redis does not answer, it gives up quietly."""
    with contextlib.suppress(LinkClosed):
        await work


def tune_gc() -> None:
    """Collect the youngest generation every 20,000 allocations instead of 700.

    A cascade allocates hundreds of thousands of short-lived objects (parsed
    accounts, change sets, events), almost none in cycles; at the default
    threshold the collector walked them often enough to cost a fifth of a
    100,000-position tick (measured: 2.34 s -> 1.81 s for a 20,000-position
    tick). What starts with the process (modules, config) is frozen out of
    its sight.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)


async def run_daemon(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run liqwatch until SIGTERM/SIGINT (or ``stop``); return after a clean shutdown."""
    stop = stop or asyncio.Event()
    tune_gc()
    redis = open_client(settings.redis_url)
    try:
        with _signals(stop):
            await Daemon(settings, redis).run(stop)
    finally:
        await redis.aclose()
