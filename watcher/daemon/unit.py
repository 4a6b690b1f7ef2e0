"""One shard as a worker runs it: store, engine, input consumer, data guard, auditor, warnings.

A worker runs a unit for each shard it holds. The unit's engine takes ticks
from its own cursor on the worker's mark book (every unit sees every mark at
its own pace); its consumer applies the shard's input stream under the
shard's lease; its guard watches the shard's data-generation marker; its
auditor walks the shard's accounts. Nothing in a unit touches another
shard's keys, so every script it runs stays in one hash slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Coroutine
from functools import partial
from typing import Any

import redis.asyncio as aioredis
import structlog

from state.keys import Keys
from state.rules import Rules
from state.store import Store
from state.store.generation import GenerationStore
from watcher.daemon.audit import Auditor
from watcher.daemon.config import Settings
from watcher.daemon.consumer import InputConsumer
from watcher.daemon.engine import Engine
from watcher.daemon.guard import DataGuard, DataState
from watcher.daemon.link import LinkClosed, RedisLink
from watcher.daemon.warnings import WarningWatcher
from watcher.feeds.book import Cursor, MarkBook


class ShardUnit:
    """Everything one worker does for one shard."""

    def __init__(
        self,
        shard: int,
        settings: Settings,
        redis: aioredis.Redis,
        book: MarkBook,
        link: RedisLink,
        *,
        shared_book: bool,
    ) -> None:
        """``shared_book``: other units take from ``book`` too, so this one opens a cursor."""
        self.shard = shard
        self.keys = Keys(settings.prefix, shard)
        self.store = Store(redis, self.keys)
        self.rules = Rules(
            self.keys,
            settings.markets,
            settings.at_equality,
            settings.liq_id_ttl,
            settings.warnings,
        )
        self.book = book
        self.link = link
        self.cursor: Cursor | None = book.cursor(time.monotonic()) if shared_book else None
        self.engine = Engine(self.store, self.rules, book, link=link, source=self.cursor)
        self.consumer = InputConsumer(
            self.store,
            self.rules,
            owner=settings.instance,
            live_marks=self.engine.live_marks,
            generation=lambda: self.engine.generation,
            nudge=self.engine.nudge,
            link=link,
            lease_ttl=settings.lease_ttl,
            batch=settings.input_batch,
            max_deliveries=settings.max_deliveries,
            shards=settings.shards,
        )
        self.guard = DataGuard(GenerationStore(redis, self.keys), link, hold=self._hold)
        self.auditor = Auditor(
            self.store,
            self.rules,
            link,
            live_marks=self.engine.live_marks,
            nudge=self.engine.nudge,
            held=lambda: self.engine.held,
            interval=settings.audit_interval,
            batch=settings.audit_batch,
        )
        self.warnings: WarningWatcher | None = None
        if settings.warnings is not None:
            self.warnings = WarningWatcher(
                self.store,
                self.rules,
                book,
                link=link,
                live_marks=self.engine.live_marks,
                held=lambda: self.engine.held,
                interval=settings.warnings_interval,
            )
        self.settings = settings
        self.started = False
        self.flushed: Counter[str] = Counter()
        self.log = structlog.get_logger().bind(shard=shard)

    def _hold(self, held: bool) -> None:
        self.engine.held = held
        if not held:
            self.engine.reconcile()

    @property
    def data_lost(self) -> bool:
        """Whether this shard's data generation is lost and not yet acknowledged."""
        return self.guard.state is DataState.DATA_LOST

    @property
    def counters(self) -> Counter[str]:
        """This unit's counters, all components together."""
        counters = self.engine.counters + self.consumer.counters + self.auditor.counters
        if self.warnings is not None:
            counters += self.warnings.counters
        return counters

    async def run(self, stop: asyncio.Event, *, fresh: bool) -> None:
        """Run the shard until ``stop``; ``fresh``: taken over, so look at every symbol first.

        A shard taken over mid-run (another worker held it until now) may
        have seen marks cross while nobody decided it: the engine reconciles
        as at a start, querying every fresh symbol in full.
        """
        try:
            if not await until_stop(stop, self.guard.start()):
                return
            self.started = True
            if fresh:
                await self._look_back()
            await self.serve(stop, fresh=fresh)
        finally:
            if self.cursor is not None:
                self.book.close(self.cursor)

    async def _look_back(self) -> None:
        """A shard taken over: act on every mark since the last one its previous holder processed.

        Between that holder's last tick and now the mark may have crossed a
        trigger and come back; this worker's book has heard every mark all
        along, so the first tick of this unit spans their extremes.
        """
        if self.cursor is None:
            return
        symbols = sorted(s for s in self.book.symbols if self.book.latest(s) is not None)
        processed = await self.link.call(
            "shards.processed", partial(self.store.processed_marks, symbols)
        )
        gaps = []
        for symbol in symbols:
            low, high, complete = self.book.extremes_since(symbol, processed[symbol])
            self.cursor.seed(symbol, low, high)
            if not complete:
                gaps.append(symbol)
        if gaps:
            # Older marks than this worker holds: a crossing and return in
            # that span would be missed; say so (the audit re-checks every account).
            self.log.warning("shards.look_back_incomplete", symbols=gaps)

    async def serve(self, stop: asyncio.Event, *, fresh: bool) -> None:
        """Run the engine, the input consumer and the auditor (the guard has started)."""
        if fresh:
            self.engine.reconcile()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(closing_quietly(self.engine.run(stop)), name=f"engine-{self.shard}")
            tg.create_task(closing_quietly(self.consumer.run(stop)), name=f"input-{self.shard}")
            if self.settings.audit_enabled:
                tg.create_task(closing_quietly(self.auditor.run(stop)), name=f"audit-{self.shard}")
            if self.warnings is not None:
                tg.create_task(
                    closing_quietly(self.warnings.run(stop)), name=f"warnings-{self.shard}"
                )


async def until_stop(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
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


async def closing_quietly(work: Coroutine[Any, Any, None]) -> None:
    """Run a component; at a stop while Redis does not answer, it gives up quietly."""
    with contextlib.suppress(LinkClosed):
        await work
