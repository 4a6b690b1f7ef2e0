"""The notifier process: readers of the events streams, one worker per sink, the metrics.

Everything runs in one TaskGroup until SIGTERM/SIGINT (or ``stop``). A stop
cancels the deliveries in flight: their entries stay in the group's pending
list and the next start delivers them (:mod:`.reader`). Redis faults are
ridden out by the daemon's link (timeouts, retries, DEGRADED); a failed
sink never stops the others, nor the daemon, whose keys are only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import ResponseError

from state.store.client import drop_idle, is_cluster, open_client
from watcher.daemon.config import Settings
from watcher.daemon.link import LinkClosed, RedisLink
from watcher.notify.config import NotifySettings
from watcher.notify.delivery import Deliverer
from watcher.notify.metrics import NotifyMetrics, serve_metrics
from watcher.notify.progress import Held, Progress
from watcher.notify.reader import Reader
from watcher.notify.worker import SinkWorker

# Seconds between readings of the group's pending count and lag.
GAUGE_INTERVAL = 2.0


class Notifier:
    """Wire the readers, the sink workers and the metrics of one notifier process."""

    def __init__(
        self,
        settings: Settings,
        notify: NotifySettings,
        redis: aioredis.Redis,
        *,
        metrics: NotifyMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.notify = notify
        self.redis = redis
        self.metrics = metrics or NotifyMetrics(s.name for s in notify.sinks)
        self.link = RedisLink(
            timeout=settings.redis_timeout,
            backoff_cap=settings.redis_backoff_cap,
            drop_idle=lambda: drop_idle(redis),
        )
        self.shards = settings.shard_keys()
        self.progress = Progress(
            redis,
            self.link,
            group=notify.group,
            sinks=[s.name for s in notify.sinks],
            metrics=self.metrics,
            max_in_flight=notify.max_in_flight,
            transaction=not is_cluster(redis),
        )
        self.workers: dict[str, SinkWorker] = {}
        self.metrics_port: int | None = None
        self._log = structlog.get_logger().bind(component="notify")

    def dispatch(self, held: list[Held]) -> None:
        """Queue each entry for every sink that does not have it yet."""
        for item in held:
            for sink in item.owed:
                self.workers[sink].queue.put_nowait(item.entry)

    def readers(self) -> list[Reader]:
        """One reader for every shard's stream; on a Redis Cluster one per shard (one slot each)."""
        groups = [[k] for k in self.shards] if is_cluster(self.redis) else [self.shards]
        return [
            Reader(self.redis, self.link, keys, self.notify, self.progress, self.dispatch)
            for keys in groups
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set."""
        self._log.info(
            "notify.starting",
            group=self.notify.group,
            consumer=self.notify.consumer,
            sinks=[f"{s.name}:{s.type.value}" for s in self.notify.sinks],
            streams=[k.events for k in self.shards],
            redis=self.settings.redacted_redis_url,
        )
        runner = None
        if self.notify.metrics_listen is not None:
            host, port = self.notify.metrics_listen
            runner = await serve_metrics(self.metrics, host, port)
            self.metrics_port = _bound_port(runner)
            self._log.info("notify.metrics_listening", host=host, port=self.metrics_port)
        connector = aiohttp.TCPConnector(limit=100)
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            ) as session:
                for spec in self.notify.sinks:
                    self.workers[spec.name] = SinkWorker(
                        Deliverer(spec, session, self.metrics), self.progress
                    )
                await self._until(stop)
        finally:
            self.link.close()
            if runner is not None:
                await runner.cleanup()
            self._log.info("notify.stopped", in_flight=self.progress.in_flight)

    async def _until(self, stop: asyncio.Event) -> None:
        async def stopper() -> None:
            await stop.wait()
            raise _Stop

        try:
            async with asyncio.TaskGroup() as tg:
                for reader in self.readers():
                    tg.create_task(reader.run())
                for worker in self.workers.values():
                    tg.create_task(worker.run())
                tg.create_task(self.watch_group())
                tg.create_task(stopper())
        except* _Stop:
            pass
        except* LinkClosed:
            pass

    async def watch_group(self) -> None:
        """Keep the pending and lag gauges current."""
        while True:
            counts = await self.group_counts()
            if counts is not None:  # else Redis did not answer: keep the last values
                self.metrics.pending.set(counts[0])
                self.metrics.lag.set(counts[1])
            await asyncio.sleep(GAUGE_INTERVAL)

    async def group_counts(self) -> tuple[int, int] | None:
        """The group's pending entries and lag over every stream; None if Redis did not answer."""
        pending = lag = 0
        for keys in self.shards:
            stream = keys.events

            def groups(stream: str = stream) -> Any:
                return self.redis.xinfo_groups(stream)

            try:
                info = await self.link.once("notify.group_info", groups)
            except ResponseError:  # no stream yet: nothing pending
                info = []
            if info is None:
                return None
            for group in info:
                if _text(group.get("name", b"")) == self.notify.group:
                    pending += int(group.get("pending") or 0)
                    lag += int(group.get("lag") or 0)
        return pending, lag


class _Stop(Exception):
    """Raised inside the TaskGroup to end it when ``stop`` is set."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        return int(address[1])
    return None


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


async def run_notifier(
    settings: Settings, notify: NotifySettings, *, stop: asyncio.Event | None = None
) -> None:
    """Run ``liqwatch notify`` until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or asyncio.Event()
    redis = open_client(settings.redis_url, cluster=settings.redis_cluster)
    try:
        with _signals(stop):
            await Notifier(settings, notify, redis).run(stop)
    finally:
        await redis.aclose()
