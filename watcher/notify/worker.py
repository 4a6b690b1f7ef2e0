"""One sink's worker: its queue of entries, its budget, one message at a time.

A sink is served by one task, in the order entries were read: an event
within the window's budget is sent at once, the rest are folded into
per-symbol summaries sent when the window ends (:mod:`.budget`). A message
delivered marks its entries done for this sink; one that failed for good
sends them to the notify dead letters with the reason. Either way the sink
is finished with them, and :class:`~watcher.notify.progress.Progress`
acknowledges each once every sink is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from watcher.notify.budget import Budget
from watcher.notify.delivery import Deliverer
from watcher.notify.messages import Entry, Message, Summary
from watcher.notify.progress import DeadLetter, Progress


class SinkWorker:
    """Deliver the entries queued for one sink, within its message budget."""

    def __init__(
        self,
        deliverer: Deliverer,
        progress: Progress,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deliverer = deliverer
        self.progress = progress
        self.name = deliverer.spec.name
        self.clock = clock
        delivery = deliverer.spec.delivery
        self.budget = Budget(delivery.summary_window, delivery.max_messages_per_window, clock=clock)
        self.queue: asyncio.Queue[Entry] = asyncio.Queue()
        self._log = structlog.get_logger().bind(component="notify", sink=self.name)

    async def run(self) -> None:
        """Serve the queue forever."""
        while True:
            entry = await self._next()
            for summary in self.budget.expired():
                await self.send(summary)
            if entry is None:
                continue
            message = self.budget.admit(entry)
            if message is not None:
                await self.send(message)
            else:
                self.deliverer.metrics.summarized.labels(sink=self.name).inc()

    async def _next(self) -> Entry | None:
        """The next queued entry; None when the open window's summaries fall due first."""
        deadline = self.budget.deadline()
        if deadline is None:
            return await self.queue.get()
        try:
            async with asyncio.timeout(max(0.0, deadline - self.clock())):
                return await self.queue.get()
        except TimeoutError:
            return None

    async def send(self, message: Message) -> None:
        """Deliver one message; record its entries as done, or dead-letter them."""
        outcome = await self.deliverer.deliver(message)
        entries = message.entries
        metrics = self.deliverer.metrics
        if outcome.delivered:
            metrics.messages.labels(sink=self.name, kind=message.kind).inc()
            metrics.delivered.labels(sink=self.name).inc(len(entries))
            self._log.info(
                "notify.sent",
                message=message.kind,
                key=message.key,
                events=len(entries),
                tries=outcome.tries,
            )
            await self.progress.finish(entries, self.name)
            return
        metrics.dead_letters.labels(sink=self.name).inc(len(entries))
        self._log.error(
            "notify.dead_letter",
            message=message.kind,
            key=message.key,
            events=len(entries),
            tries=outcome.tries,
            reason=outcome.reason,
        )
        dead = DeadLetter(self.name, outcome.reason, outcome.tries, isinstance(message, Summary))
        await self.progress.finish(entries, self.name, dead)
