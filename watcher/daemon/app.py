"""The daemon: one TaskGroup owning the feeds, the shards it runs and the heartbeat.

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
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from functools import partial

import orjson
import redis.asyncio as aioredis
import structlog

from state.rules import Rules
from state.store import Store
from state.store.client import drop_idle, open_client
from state.store.shards import ShardStore
from watcher.clock import wall_ms
from watcher.daemon.audit import Auditor
from watcher.daemon.config import Settings
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.daemon.guard import DataGuard, DataState
from watcher.daemon.lag import LagMeter
from watcher.daemon.link import LinkState, RedisLink
from watcher.daemon.metrics import DaemonMetrics, Observed
from watcher.daemon.serve import serve_metrics
from watcher.daemon.shards import Coordinator
from watcher.daemon.unit import ShardUnit, closing_quietly, until_stop
from watcher.daemon.version import version
from watcher.feeds import make_venue
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook
from watcher.feeds.client import FeedStats, run_feed
from watcher.feeds.spec import FeedSpec


class Daemon:
    """Wire the components of one liqwatch process together.

    With one shard (the default) the process runs that shard always: every
    instance decides every tick (a second instance is a hot standby whose
    duplicate claims the guards refuse) and the input lease only picks who
    applies input. With S shards the process is a worker: a
    :class:`Coordinator` holds its share of the shards through their leases
    and it runs a :class:`ShardUnit` (engine, input, guard, audit) for each.
    Feeds and the mark book are the process's, shared by its units.
    """

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.book = MarkBook.from_feeds(settings.feeds)
        self.link = self._new_link()
        self.shard_store = ShardStore(redis, settings.keys, settings.shards)
        self.coordinator: Coordinator | None = None
        self.unit: ShardUnit | None = None
        if settings.shards == 1:
            self.unit = self.make_unit(0)
        else:
            self.coordinator = Coordinator(
                self.shard_store,
                self.link,
                worker=settings.instance,
                lease_ttl=settings.lease_ttl,
                make_unit=self.make_unit,
            )
        self.feed_stats = [FeedStats() for _ in settings.feeds]
        self.lag = LagMeter()
        # What the heartbeat last read for the metrics, and when it beat (wall seconds).
        self.observed = Observed()
        self.last_beat = 0.0
        self.metrics = DaemonMetrics(self)
        if self.unit is not None:
            self.unit.engine.observe_latency = self.metrics.latency.observe
        self.log = structlog.get_logger().bind(instance=settings.instance)

    def _new_link(self, shard: int | None = None) -> RedisLink:
        return RedisLink(
            timeout=self.settings.redis_timeout,
            backoff_cap=self.settings.redis_backoff_cap,
            drop_idle=lambda: drop_idle(self.redis),
            shard=shard,
        )

    def make_unit(self, shard: int) -> ShardUnit:
        """The unit of one shard, taking ticks from this process's book.

        Several shards: each unit has a link of its own. On a Redis Cluster a
        shard lives on one node; while that node fails over, only the shards
        on it are DEGRADED (and reconcile after), not the whole worker.
        """
        sharded = self.settings.shards > 1
        link = self._new_link(shard) if sharded else self.link
        unit = ShardUnit(shard, self.settings, self.redis, self.book, link, shared_book=sharded)
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            unit.engine.observe_latency = metrics.latency.observe
        return unit

    @property
    def links(self) -> list[RedisLink]:
        """The process's link and each unit's (one shard: the same one)."""
        return [self.link, *(u.link for u in self.units if u.link is not self.link)]

    # One shard: its components, as the tests and the demo reach them.
    def _only(self) -> ShardUnit:
        if self.unit is None:
            raise AttributeError("a sharded worker has no single unit: see .units")
        return self.unit

    @property
    def engine(self) -> Engine:
        return self._only().engine

    @property
    def store(self) -> Store:
        return self._only().store

    @property
    def consumer(self) -> InputConsumer:
        return self._only().consumer

    @property
    def guard(self) -> DataGuard:
        return self._only().guard

    @property
    def auditor(self) -> Auditor:
        return self._only().auditor

    @property
    def rules(self) -> Rules:
        return self._only().rules

    @property
    def units(self) -> list[ShardUnit]:
        """The units this process runs now, by shard."""
        if self.unit is not None:
            return [self.unit]
        assert self.coordinator is not None
        return self.coordinator.units

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then finish the work in flight and return."""
        s = self.settings
        self.log.info(
            "daemon.starting",
            redis=s.redacted_redis_url,
            cluster=s.redis_cluster,
            prefix=s.prefix,
            shards=s.shards,
            feeds=[f.venue for f in s.feeds],
            markets=len(s.markets),
        )
        async with asyncio.TaskGroup() as tg:
            feeds = [
                tg.create_task(self._feed(feed, stats), name=f"feed-{i}-{feed.venue}")
                for i, (feed, stats) in enumerate(zip(s.feeds, self.feed_stats, strict=True))
            ]
            tg.create_task(self.lag.run(stop), name="loop-lag")
            if s.metrics_listen is not None:
                serve = serve_metrics(self, self.metrics, s.metrics_listen, stop)
                tg.create_task(serve, name="metrics")
            # Marks flow into the book while the rest waits for Redis, if it must.
            started = await until_stop(stop, self._start())
            if started:
                if self.unit is not None:
                    serve = self.unit.serve(stop, fresh=False)
                    tg.create_task(closing_quietly(serve), name="shard-0")
                else:
                    assert self.coordinator is not None
                    tg.create_task(closing_quietly(self.coordinator.run(stop)), name="shards")
                tg.create_task(closing_quietly(self._heartbeat(stop)), name="heartbeat")
            await stop.wait()
            self.log.info("daemon.stopping", redis=self.link.state.value)
            # Feeds stop taking ticks at once; the engine and the input consumer
            # see ``stop`` and return after the batch in flight; a call waiting
            # on a Redis that does not answer gives up.
            for task in feeds:
                task.cancel()
            for link in self.links:
                link.close()
        if started:
            await self.link.once("heartbeat.drop", self._drop_heartbeat)
        self.log.info("daemon.stopped")

    async def _start(self) -> None:
        """Check the shard count Redis records; one shard: adopt its data generation."""
        await self.link.call("shards.count", self.shard_store.record_count)
        if self.unit is not None:
            await self.unit.guard.start()
            self.unit.started = True

    @property
    def heartbeat_key(self) -> str:
        """One shard: the process's heartbeat; several: this worker's own."""
        keys = self.settings.keys
        return keys.health if self.unit is not None else keys.worker_health(self.settings.instance)

    async def _drop_heartbeat(self) -> None:
        await self.units_store().drop_heartbeat(self.settings.instance, self.heartbeat_key)

    def units_store(self) -> Store:
        """A store to run process-wide calls with (its shard does not matter)."""
        return Store(self.redis, self.settings.keys)

    @property
    def state(self) -> str:
        """OK, DEGRADED (Redis does not answer) or DATA_LOST (held until acknowledged)."""
        if any(u.data_lost for u in self.units):
            return DataState.DATA_LOST.value
        if any(link.state is LinkState.DEGRADED for link in self.links):
            return LinkState.DEGRADED.value
        return LinkState.OK.value

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
            for unit in self.units:
                if unit.started:
                    await unit.guard.check()
            await self.beat()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    async def beat(self) -> None:
        """Write the heartbeat key (with a TTL) and flush counters into each shard's stats hash."""
        s = self.settings
        units = [u for u in self.units if u.started]
        live = self._live_marks()
        now_ms = wall_ms()
        body: dict[str, object] = {
            "instance": s.instance,
            "version": version(),
            "pid": os.getpid(),
            "ts": now_ms,
            "state": self.state,
            "redis": self._redis_status(),
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
            "loop_lag_ms": round(self.observe_lag() * 1000, 1),
        }
        if self.unit is not None:
            guard = self.unit.guard
            body["generation"] = None if guard.seen is None else guard.seen.id
            body["held"] = guard.reason
            body["input_leader"] = self.unit.consumer.leader
        else:
            assert self.coordinator is not None
            c = self.coordinator
            body["generation"] = {
                str(u.shard): None if u.guard.seen is None else u.guard.seen.id for u in units
            }
            body["held"] = next((u.guard.reason for u in units if u.guard.reason), None)
            body["input_leader"] = [u.shard for u in units if u.consumer.leader]
            body["shards"] = {
                "count": s.shards,
                "held": c.held,
                "share": c.share,
                "workers": c.workers,
                "taken": c.taken,
                "handed_back": c.handed_back,
                "lost": c.lost,
            }
        stuck_before = now_ms - int(s.stuck_after * 1000)
        stuck = 0
        for unit in units:
            count, oldest, since = await self.link.call(
                "stuck", partial(unit.store.liquidating_before, stuck_before)
            )
            if count:
                self.log.warning(
                    "liquidation.stuck",
                    shard=unit.shard,
                    count=count,
                    oldest=oldest,
                    oldest_age_s=round((now_ms - since) / 1000, 1),
                )
                stuck += count
        if stuck:
            body["stuck_liquidations"] = stuck
        if s.metrics_listen is not None:
            # What only /metrics and /ready read.
            await self._observe(units, now_ms)
        flushes = []
        for unit in units:
            totals = unit.counters
            deltas = {n: v - unit.flushed[n] for n, v in totals.items() if v != unit.flushed[n]}
            flushes.append((unit, totals, deltas))

        async def write() -> bool:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.heartbeat_key, orjson.dumps(body), px=int(s.heartbeat_ttl * 1000))
            for unit, _, deltas in flushes:
                for name, delta in deltas.items():
                    pipe.hincrby(unit.keys.stats, name, delta)
            await pipe.execute()
            return True

        # Once: a counter flush retried after a lost answer would count twice.
        if await self.link.once("heartbeat", write):
            self.last_beat = now_ms / 1000
            for unit, totals, _ in flushes:
                unit.flushed = Counter(totals)

    def observe_lag(self) -> float:
        """Take the loop lag since the last beat (for the heartbeat and the gauge)."""
        self.observed.loop_lag = self.lag.take()
        return self.observed.loop_lag

    async def _observe(self, units: list[ShardUnit], now_ms: int) -> None:
        """Read what the gauges need from Redis: input backlog, claims in flight, in warning."""
        lag = pending = in_flight = 0
        known = True
        oldest: int | None = None
        for unit in units:
            backlog = await self.link.once("metrics.input", unit.store.input_backlog)
            if backlog is None:
                known = False
            else:
                unit_lag, unit_pending = backlog
                known = known and unit_lag is not None
                lag += unit_lag or 0
                pending += unit_pending
            flight = await self.link.once(
                "metrics.liquidating", partial(unit.store.liquidating_before, now_ms)
            )
            if flight is not None and flight[0]:
                in_flight += flight[0]
                oldest = flight[2] if oldest is None else min(oldest, flight[2])
        warning: dict[str, int] = {}
        for unit in units:
            if unit.warnings is None:
                continue
            counts = await self.link.once("metrics.warnings", unit.store.warning_counts)
            for kind, n in (counts or {}).items():
                warning[kind] = warning.get(kind, 0) + n
        seen = self.observed
        seen.at = time.monotonic()
        seen.in_warning = warning
        seen.input_lag, seen.input_lag_known, seen.input_pending = lag, known, pending
        seen.in_flight = in_flight
        seen.oldest_claim_age = 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)

    def _redis_status(self) -> dict[str, object]:
        links = self.links
        degraded = [u.shard for u in self.units if u.link.state is LinkState.DEGRADED]
        down = any(link.state is LinkState.DEGRADED for link in links)
        status: dict[str, object] = {
            "state": (LinkState.DEGRADED if down else LinkState.OK).value,
            "outages": sum(link.outages for link in links),
            "last_error": next((x.last_error for x in links if x.last_error), None),
        }
        if self.unit is None:
            status["degraded_shards"] = degraded
        return status

    def _live_marks(self) -> dict[str, Decimal]:
        """The live marks as the units see them (any unit: they share the book)."""
        for unit in self.units:
            return unit.engine.live_marks()
        return {s: m.price for s, m in self.book.fresh_marks(time.monotonic()).items()}


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
    redis = open_client(settings.redis_url, cluster=settings.redis_cluster)
    try:
        with _signals(stop):
            await Daemon(settings, redis).run(stop)
    finally:
        await redis.aclose()
